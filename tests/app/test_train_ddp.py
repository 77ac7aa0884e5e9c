"""DDP from the Hydra command line: two CPU processes over gloo, one MLflow run, one output directory.

Started as ``python -m xent_plugin.app.train``, so this also covers the module form of the app, which Lightning
re-launches for rank 1 with ``-m`` as well.
"""

from __future__ import annotations

import re

import pytest
from mlflow.tracking import MlflowClient

from tests.app.xent_train_runs import FEW_BATCHES, run_xent_train, runs_in, sqlite_uri

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("ddp")
    result = run_xent_train(
        cwd, "trainer=ddp", "trainer.devices=2", *FEW_BATCHES, f"hydra.run.dir={cwd / 'run'}", as_module=True
    )
    return cwd, result, MlflowClient(sqlite_uri(cwd))


def test_two_ranks_make_one_finished_run(ddp_run):
    _, _, client = ddp_run

    (run,) = runs_in(client)

    assert run.info.status == "FINISHED"
    assert run.data.params["trainer.strategy"] == "ddp"
    assert len(client.get_metric_history(run.info.run_id, "val/cross_entropy")) == 1  # one epoch, logged once


def test_the_second_rank_writes_only_its_log_into_the_first_ranks_output_directory(ddp_run):
    cwd, _, _ = ddp_run

    assert sorted(path.name for path in cwd.iterdir()) == ["mlartifacts", "mlflow.db", "run"]
    run_dir = cwd / "run"
    assert sorted(path.name for path in run_dir.iterdir()) == [
        ".hydra",
        "checkpoints",
        "train.log",
        "train_ddp_process_1.log",
    ]


def test_only_rank_zero_prints_the_summary(ddp_run):
    _, result, client = ddp_run

    summaries = re.findall(r"MLflow run (\w+) in experiment", result.stdout + result.stderr)

    assert summaries == [runs_in(client)[0].info.run_id]
