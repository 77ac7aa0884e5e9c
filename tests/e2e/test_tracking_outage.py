"""The tracking server stops mid-run and comes back: training completes, and what it produced still arrives.

One fit of the digits MLP (``XentClassifier``, ``XentMonitor``, ``ResilientMLFlowLogger`` and ``ModelCheckpoint``,
as ``xent-train`` wires them) logs to the session's real ``mlflow server``. A callback stops the server at the
start of epoch ``DOWN_AT`` and starts it again, same port and same store, at the start of epoch ``UP_AT``. The
fit runs in this process so that the outage starts and ends at known epochs; each test below checks one
consequence of that single run.
"""

from __future__ import annotations

import functools
import re
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from mlflow.tracking import MlflowClient
from pytorch_lightning.callbacks import ModelCheckpoint

from tests.e2e.conftest import TrackingServer, epoch_at_step, image_steps
from xent_plugin import XentMonitor
from xent_plugin.app.data import DigitsDataModule
from xent_plugin.app.models import MLP, XentClassifier
from xent_plugin.integrations.mlflow import ResilientMLFlowLogger

pytestmark = pytest.mark.slow

EPOCHS = 6
DOWN_AT, UP_AT = 2, 4  # the server is down for epochs 2 and 3
OUTAGE_EPOCHS = range(DOWN_AT, UP_AT)
TRAIN_BATCHES = 2


class ServerOutage(pl.Callback):
    """Stops the tracking server when epoch ``down_at`` starts and restarts it when epoch ``up_at`` starts."""

    def __init__(self, server: TrackingServer, down_at: int, up_at: int) -> None:
        self.server = server
        self.down_at = down_at
        self.up_at = up_at
        self.restarted_at_ms: int | None = None

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch == self.down_at:
            self.server.stop()
        elif trainer.current_epoch == self.up_at:
            self.server.start()
            self.restarted_at_ms = int(time.time() * 1000)


@dataclass
class OutageRun:
    trainer: pl.Trainer
    logger: ResilientMLFlowLogger
    client: MlflowClient
    run_id: str
    warnings: list[str]
    checkpoints: Path
    restarted_at_ms: int


@pytest.fixture(scope="module")
def outage_run(tracking_server, tmp_path_factory) -> OutageRun:
    directory = tmp_path_factory.mktemp("outage")
    with pytest.MonkeyPatch.context() as patch:
        # Connection refused must cost one attempt, not MLflow's default 7 retries with backoff.
        patch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        patch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
        patch.chdir(directory)
        torch.manual_seed(0)
        logger = ResilientMLFlowLogger(
            experiment_name="e2e-outage",
            tracking_uri=tracking_server.url,
            retry_after_s=0,  # re-send kept points with the very next call, to see them arrive within the run
            unsent_path=directory / "mlflow_unsent.jsonl",
        )
        outage = ServerOutage(tracking_server, DOWN_AT, UP_AT)
        checkpoints = directory / "checkpoints"
        trainer = pl.Trainer(
            accelerator="cpu",
            max_epochs=EPOCHS,
            limit_train_batches=TRAIN_BATCHES,
            limit_val_batches=2,
            log_every_n_steps=1,
            num_sanity_val_steps=0,
            enable_progress_bar=False,
            enable_model_summary=False,
            default_root_dir=directory,
            logger=logger,
            callbacks=[
                # Uploads in the caller's thread, so no upload is in flight when the outage starts.
                XentMonitor(upload_in_background=False),
                ModelCheckpoint(
                    dirpath=checkpoints,
                    filename="epoch_{epoch:03d}",
                    save_top_k=-1,
                    save_last=True,
                    auto_insert_metric_name=False,
                ),
                outage,
            ],
        )
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                trainer.fit(_digits_mlp(), datamodule=DigitsDataModule(batch_size=64))
        finally:
            if not tracking_server.running:  # the rest of the session needs its server
                tracking_server.start()
    return OutageRun(
        trainer=trainer,
        logger=logger,
        client=MlflowClient(tracking_server.url),
        run_id=logger.run_id,
        warnings=[str(warning.message) for warning in caught],
        checkpoints=checkpoints,
        restarted_at_ms=outage.restarted_at_ms,
    )


def test_training_completes_through_the_outage(outage_run):
    assert outage_run.trainer.state.finished
    assert outage_run.trainer.current_epoch == EPOCHS
    assert outage_run.client.get_run(outage_run.run_id).info.status == "FINISHED"


def test_a_warning_says_which_metrics_were_not_logged_and_that_they_are_kept(outage_run):
    kept = [message for message in outage_run.warnings if "kept, and re-sent in order when the server" in message]

    assert kept, outage_run.warnings
    assert re.search(r"could not log \d+ metrics at step \d+ \(.*val/", "\n".join(kept))
    assert all(outage_run.logger._tracking_uri in message for message in kept)


def test_a_warning_names_each_reliability_diagram_that_was_not_logged(outage_run):
    for epoch in OUTAGE_EPOCHS:
        assert any(
            f"could not log reliability diagram 'val/reliability' at step {_validation_step(epoch)}" in message
            for message in outage_run.warnings
        ), outage_run.warnings


def test_epochs_after_the_outage_log_again(outage_run):
    epochs = _epochs_with(outage_run, "val/cross_entropy")

    assert {UP_AT, EPOCHS - 1} <= set(epochs)


def test_points_logged_during_the_outage_arrive_once_with_their_original_timestamps(outage_run):
    history = outage_run.client.get_metric_history(outage_run.run_id, "val/cross_entropy")
    epochs = epoch_at_step(outage_run.client, outage_run.run_id)
    during_outage = [point for point in history if epochs[point.step] in OUTAGE_EPOCHS]

    assert sorted(epochs[point.step] for point in history) == list(range(EPOCHS))
    assert len(during_outage) == len(OUTAGE_EPOCHS)
    assert all(point.timestamp < outage_run.restarted_at_ms for point in during_outage)


def test_every_training_loss_point_arrives(outage_run):
    history = outage_run.client.get_metric_history(outage_run.run_id, "train/loss")

    assert sorted(point.step for point in history) == list(range(EPOCHS * TRAIN_BATCHES))


def test_nothing_is_left_pending_or_spooled(outage_run):
    assert outage_run.logger.pending_metrics == 0
    assert not outage_run.logger.unsent_path.exists()


def test_every_epochs_checkpoint_is_intact(outage_run):
    for epoch in range(EPOCHS):
        checkpoint = torch.load(outage_run.checkpoints / f"epoch_{epoch:03d}.ckpt", weights_only=False)
        assert checkpoint["epoch"] == epoch
        model = XentClassifier.load_from_checkpoint(
            outage_run.checkpoints / f"epoch_{epoch:03d}.ckpt", net=MLP(64, [32], 10)
        )
        assert all(parameter.isfinite().all() for parameter in model.parameters())


def test_the_last_checkpoint_holds_the_final_weights(outage_run):
    last = torch.load(outage_run.checkpoints / "last.ckpt", weights_only=False)
    trained = outage_run.trainer.lightning_module.state_dict()

    assert last["epoch"] == EPOCHS - 1
    assert all(torch.equal(last["state_dict"][name], value) for name, value in trained.items())


def test_reliability_diagrams_of_the_outage_epochs_arrive_after_the_server_returns(outage_run):
    assert image_steps(outage_run.client, outage_run.run_id) == [_validation_step(epoch) for epoch in range(EPOCHS)]


def _validation_step(epoch: int) -> int:
    """The step of an epoch's validation values and diagram: Lightning's count of the training steps before the
    epoch's last."""
    return (epoch + 1) * TRAIN_BATCHES - 1


def _digits_mlp() -> XentClassifier:
    return XentClassifier(MLP(64, [32], 10), functools.partial(torch.optim.Adam, lr=3e-3))


def _epochs_with(run: OutageRun, key: str) -> list[int]:
    epochs = epoch_at_step(run.client, run.run_id)
    return sorted(epochs[point.step] for point in run.client.get_metric_history(run.run_id, key))
