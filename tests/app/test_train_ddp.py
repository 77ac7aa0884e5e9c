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


def test_no_rank_is_advised_to_sync_values_that_are_synced_already(ddp_run):
    _, result, _ = ddp_run

    assert "sync_dist" not in result.stdout + result.stderr


def test_the_models_own_loss_is_synced_so_it_equals_the_monitors_cross_entropy(ddp_run):
    _, _, client = ddp_run

    (run,) = runs_in(client)

    for stage in ("val", "test"):
        metrics = run.data.metrics
        # The model's loss is a float32 mean, XentMonitor's cross-entropy a float64 one.
        assert metrics[f"{stage}/loss"] == pytest.approx(metrics[f"{stage}/cross_entropy"], rel=1e-5), stage
