"""Two nodes, simulated: two ``torchrun --nnodes=2 --nproc-per-node=1`` launches on 127.0.0.1 (gloo) run
``xent-train trainer=ddp`` and make one MLflow run whose values are those of one device.

No training step runs (``trainer.limit_train_batches=0``), so both runs test the same freshly seeded weights on
the whole test split (359 rows: odd, so the distributed sampler pads one rank); their ``test/`` metrics must
agree to float64 rounding. torchrun starts the processes itself, so Lightning does not launch any.
"""

from __future__ import annotations

import sys

import pytest
from mlflow.tracking import MlflowClient

from tests.app.conftest import _free_port
from tests.app.xent_train_runs import finish, output_tail, runs_in, sqlite_uri, start_xent_train

pytestmark = pytest.mark.slow

TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]
# No training, the whole test split, no checkpoint to pick the "best" weights from.
EVALUATION_ONLY = (
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=0",
    "trainer.enable_progress_bar=false",
    "callbacks.model_checkpoint=null",
    "callbacks.xent_monitor.log_figures=false",
)
COMPARED = ("test/cross_entropy", "test/accuracy", "test/ece", "test/brier_score", "test/entropy")


def test_two_torchrun_nodes_make_one_run_with_the_single_device_values(tmp_path):
    port = _free_port()
    nodes_dir, single_dir = tmp_path / "nodes", tmp_path / "single"
    nodes_dir.mkdir()
    single_dir.mkdir()
    launch = [*TORCHRUN, "--nnodes=2", "--nproc-per-node=1", "--master-addr=127.0.0.1", f"--master-port={port}"]
    app = ["-m", "xent_plugin.app.train", "trainer=ddp", "trainer.devices=1", "trainer.num_nodes=2", *EVALUATION_ONLY]
    started = [start_xent_train(nodes_dir, *app, program=[*launch, f"--node-rank={rank}"]) for rank in (0, 1)]
    started.append(start_xent_train(single_dir, *EVALUATION_ONLY))

    results = [finish(process) for process in started]

    assert [result.returncode for result in results] == [0, 0, 0], "\n".join(map(output_tail, results))
    (run,) = runs_in(MlflowClient(sqlite_uri(nodes_dir)))
    (single,) = runs_in(MlflowClient(sqlite_uri(single_dir)))
    assert run.info.status == "FINISHED"
    assert run.data.params["trainer.num_nodes"] == "2"
    for key in COMPARED:
        assert run.data.metrics[key] == pytest.approx(single.data.metrics[key], rel=1e-9, abs=1e-12), key
