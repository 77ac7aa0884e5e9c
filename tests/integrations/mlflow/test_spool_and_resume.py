"""Spooled writes come back: a resumed run re-sends its spool first, and the replay command sends one into its
run; after an outage to the end and a resume, every epoch is in the run exactly once. Real SQLite stores."""

from __future__ import annotations

import subprocess
import sys

import pytest
import pytorch_lightning as pl
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from tests.integrations.lightning.tiny_models import TinyClassifier, fit_kwargs, make_loader
from tests.integrations.mlflow.test_outbox import Switchable, make_outbox
from xent_plugin import XentMonitor
from xent_plugin.integrations.mlflow import ResilientMLFlowLogger
from xent_plugin.integrations.mlflow.artifacts import queue_reliability_figures

# The client calls that reach the server; while the server is "down" each of them fails.
SERVER_CALLS = ("log_batch", "log_artifact", "log_dict", "set_tag", "set_terminated", "get_metric_history", "get_run")


class ServerDownFrom(pl.Callback):
    """From the start of epoch ``epoch`` to the end of the run, every call of ``logger``'s client fails."""

    def __init__(self, logger: ResilientMLFlowLogger, epoch: int, monkeypatch) -> None:
        self.logger, self.epoch, self.monkeypatch = logger, epoch, monkeypatch

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch != self.epoch:
            return
        client = self.logger._mlflow_client

        def refused(*args, **kwargs):
            raise MlflowException("API request failed: Connection refused")

        for name in SERVER_CALLS:
            self.monkeypatch.setattr(client, name, refused)


def val_epochs_and_images(client: MlflowClient, run_id: str) -> tuple[list[int], list[int], list[int]]:
    epochs = {int(point.step): int(point.value) for point in client.get_metric_history(run_id, "epoch")}
    steps = sorted(point.step for point in client.get_metric_history(run_id, "val/cross_entropy"))
    images = [item.path for item in client.list_artifacts(run_id, "images") if item.path.endswith(".png")]
    return [epochs[step] for step in steps], steps, sorted(int(path.split("+")[2]) for path in images)


@pytest.mark.slow
def test_after_an_outage_to_the_end_and_a_resume_every_epoch_is_in_the_run_once(tmp_path, client, monkeypatch):
    tracking_uri = client.tracking_uri
    spool = tmp_path / "mlflow_unsent.jsonl"
    checkpoints = tmp_path / "checkpoints"
    options = fit_kwargs(enable_checkpointing=True, max_epochs=4)
    first = ResilientMLFlowLogger(
        experiment_name="outage-then-resume",
        tracking_uri=tracking_uri,
        artifact_location=(tmp_path / "artifacts").as_uri(),
        unsent_path=spool,
        retry_after_s=60,
    )
    with monkeypatch.context() as down:
        callbacks = [XentMonitor(), pl.callbacks.ModelCheckpoint(dirpath=checkpoints, save_last=True)]
        trainer = pl.Trainer(logger=first, callbacks=[*callbacks, ServerDownFrom(first, 2, down)], **options)
        with pytest.warns(UserWarning, match=f"they were written to {spool}"):
            trainer.fit(TinyClassifier(), make_loader(32), make_loader(16))
    # Epochs 2-3 are only in the spool (0-1 too, if the worker had not sent them when the store went away).
    assert set(val_epochs_and_images(client, first.run_id)[0]) <= {0, 1}
    assert spool.exists()

    resumed = ResilientMLFlowLogger(tracking_uri=tracking_uri, run_id=first.run_id, unsent_path=spool)
    callbacks = [XentMonitor(), pl.callbacks.ModelCheckpoint(dirpath=checkpoints, save_last=True)]
    trainer = pl.Trainer(logger=resumed, callbacks=callbacks, **{**options, "max_epochs": 6})
    trainer.fit(TinyClassifier(), make_loader(32), make_loader(16), ckpt_path=str(checkpoints / "last.ckpt"))

    epochs, steps, image_steps = val_epochs_and_images(client, first.run_id)
    assert epochs == list(range(6))
    assert image_steps == steps
    assert not spool.exists()
    assert client.get_run(first.run_id).info.status == "FINISHED"


@pytest.fixture
def spool_of_two_steps(client, run_id, table, tmp_path):
    switchable = Switchable(client)
    outbox = make_outbox(switchable, run_id, spool_path=tmp_path / "spool.jsonl", retry_after_s=60)
    switchable.down = True
    with pytest.warns(UserWarning):
        for step in range(2):
            outbox.log_metrics({"val/ece": step / 10}, step=step)
            queue_reliability_figures(outbox, table, key="val/reliability", step=step)
        outbox.close()
    return tmp_path / "spool.jsonl"


def replay_command(spool, tracking_uri) -> subprocess.CompletedProcess:
    command = [
        sys.executable,
        "-m",
        "xent_plugin.integrations.mlflow.replay",
        str(spool),
        "--tracking-uri",
        tracking_uri,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_the_replay_command_sends_a_spool_into_its_run_once_however_often_it_runs(
    spool_of_two_steps, client, run_id, tmp_path
):
    tracking_uri = client.tracking_uri
    copy = tmp_path / "copy.jsonl"
    copy.write_text(spool_of_two_steps.read_text())

    for spool in (spool_of_two_steps, copy):
        result = replay_command(spool, tracking_uri)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == f"replay: every write in {spool} reached MLflow run {run_id}."
        assert not spool.exists()

    assert [(point.step, point.value) for point in client.get_metric_history(run_id, "val/ece")] == [(0, 0.0), (1, 0.1)]
    images = [item.path for item in client.list_artifacts(run_id, "images") if item.path.endswith(".png")]
    assert sorted(int(path.split("+")[2]) for path in images) == [0, 1]
    tables = [item.path for item in client.list_artifacts(run_id, "reliability/val/reliability")]
    assert tables == ["reliability/val/reliability/step_000000.json", "reliability/val/reliability/step_000001.json"]


def test_the_replay_command_refuses_a_missing_file_naming_it(tmp_path):
    result = replay_command(tmp_path / "nope.jsonl", "sqlite:///unused.db")
    assert result.returncode == 2
    assert f"{tmp_path / 'nope.jsonl'}: no such file" in result.stderr
