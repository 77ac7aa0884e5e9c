"""A real ``mlflow server`` that is not up yet, or that hangs (SIGSTOP), under a real fit with XentMonitor.

- **Late server:** training starts with the tracking URI at a port where nothing listens; ``mlflow server`` is
  started there when epoch 1 starts. Every epoch's scalars, diagrams and tables arrive, each exactly once.
- **Hung server:** the server process is stopped (SIGSTOP) for two epochs and continued (SIGCONT). No epoch
  waits on it for longer than the logger's bound, and every epoch's scalars and diagrams arrive exactly once.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
import pytorch_lightning as pl
from mlflow.tracking import MlflowClient

from tests.e2e.conftest import TrackingServer, epoch_at_step, image_steps
from tests.integrations.lightning.tiny_models import TinyClassifier, fit_kwargs, make_loader
from xent_plugin import XentMonitor
from xent_plugin.integrations.mlflow import ResilientMLFlowLogger

pytestmark = pytest.mark.slow

EPOCHS = 4
MAX_WAIT_S = 2.0
REQUEST_TIMEOUT_S = 3


class AtEpochStart(pl.Callback):
    """Calls ``actions[epoch]()`` when that epoch starts, and records how long each epoch took."""

    def __init__(self, actions) -> None:
        self.actions = actions
        self.epoch_seconds: list[float] = []
        self._started = 0.0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        action = self.actions.get(trainer.current_epoch)
        if action is not None:
            action()
        self._started = time.monotonic()

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        self.epoch_seconds.append(time.monotonic() - self._started)


def assert_each_epoch_once(server: TrackingServer, experiment: str) -> str:
    client = MlflowClient(server.url)
    (run,) = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    run_id = run.info.run_id
    epochs = epoch_at_step(client, run_id)
    for key in ("val/cross_entropy", "val/ece"):
        assert sorted(epochs[point.step] for point in client.get_metric_history(run_id, key)) == list(range(EPOCHS))
    val_steps = sorted(point.step for point in client.get_metric_history(run_id, "val/cross_entropy"))
    assert sorted(point.step for point in client.get_metric_history(run_id, "train/loss")) == list(range(EPOCHS * 4))
    assert image_steps(client, run_id) == val_steps
    tables = [item.path for item in client.list_artifacts(run_id, "reliability/val/reliability")]
    assert tables == [f"reliability/val/reliability/step_{step:06d}.json" for step in val_steps]
    assert run.info.status == "FINISHED"
    return run_id


@pytest.fixture
def short_http_timeouts(monkeypatch) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", str(REQUEST_TIMEOUT_S))


@pytest.fixture
def server(tmp_path) -> TrackingServer:
    server = TrackingServer(tmp_path / "server")
    yield server
    server.stop()


class LoggingModel(TinyClassifier):
    def training_step(self, batch, batch_idx):
        out = super().training_step(batch, batch_idx)
        self.log("train/loss", out["loss"])
        return out


def test_a_server_that_comes_up_after_the_first_epoch_gets_every_epoch_once(server, short_http_timeouts, tmp_path):
    logger = ResilientMLFlowLogger(
        experiment_name="late", tracking_uri=server.url, retry_after_s=0, unsent_path=tmp_path / "unsent.jsonl"
    )
    timer = AtEpochStart({1: server.start})
    trainer = pl.Trainer(
        logger=logger, callbacks=[XentMonitor(), timer], **fit_kwargs(max_epochs=EPOCHS, log_every_n_steps=1)
    )
    with pytest.warns(UserWarning, match="could not log"):
        trainer.fit(LoggingModel(), make_loader(32), make_loader(24, seed=1))

    assert_each_epoch_once(server, "late")
    assert not (tmp_path / "unsent.jsonl").exists()


def test_a_hung_server_holds_no_epoch_longer_than_the_bound_and_loses_nothing(server, short_http_timeouts, tmp_path):
    server.start()
    logger = ResilientMLFlowLogger(
        experiment_name="hung",
        tracking_uri=server.url,
        retry_after_s=0,
        max_wait_s=MAX_WAIT_S,
        unsent_path=tmp_path / "unsent.jsonl",
    )
    group = os.getpgid(server._process.pid)
    stopped = {
        1: lambda: os.killpg(group, signal.SIGSTOP),
        2: lambda: time.sleep(2 * REQUEST_TIMEOUT_S),  # so the requests of epoch 1 time out while it is stopped
        3: lambda: os.killpg(group, signal.SIGCONT),
    }
    timer = AtEpochStart(stopped)
    trainer = pl.Trainer(
        logger=logger, callbacks=[XentMonitor(), timer], **fit_kwargs(max_epochs=EPOCHS, log_every_n_steps=1)
    )
    try:
        with pytest.warns(UserWarning, match="could not log"):
            trainer.fit(LoggingModel(), make_loader(32), make_loader(24, seed=1))
    finally:
        os.killpg(group, signal.SIGCONT)

    # The loop never waits on the server: an epoch of 4 tiny batches takes well under a second; the bound is
    # generous for a loaded machine and far below the request timeout times the requests of an epoch.
    assert max(timer.epoch_seconds[1:3]) < MAX_WAIT_S + REQUEST_TIMEOUT_S, timer.epoch_seconds
    assert_each_epoch_once(server, "hung")
    assert not Path(tmp_path / "unsent.jsonl").exists()
