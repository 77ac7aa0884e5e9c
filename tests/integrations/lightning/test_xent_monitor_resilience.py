"""Resuming continues the series; an unreachable tracking server does not stop a fit."""

from __future__ import annotations

import socket

import pytest
import pytorch_lightning as pl

from tests.integrations.lightning.tiny_models import TinyClassifier, fit_kwargs, make_loader, metric_history
from xent_plugin import XentMonitor
from xent_plugin.integrations.mlflow import ResilientMLFlowLogger


def test_resume_from_checkpoint_continues_the_metric_series(tmp_path, mlflow_logger):
    checkpoint = pl.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    options = fit_kwargs(enable_checkpointing=True, max_epochs=2)
    trainer = pl.Trainer(logger=mlflow_logger, callbacks=[XentMonitor(), checkpoint], **options)
    trainer.fit(TinyClassifier(), make_loader(32), make_loader(16))

    resumed_logger = ResilientMLFlowLogger(tracking_uri=mlflow_logger._tracking_uri, run_id=mlflow_logger.run_id)
    checkpoint = pl.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    options["max_epochs"] = 4
    trainer = pl.Trainer(logger=resumed_logger, callbacks=[XentMonitor(), checkpoint], **options)
    trainer.fit(TinyClassifier(), make_loader(32), make_loader(16), ckpt_path=str(tmp_path / "ckpt" / "last.ckpt"))

    steps = [step for step, _ in metric_history(resumed_logger, "val/cross_entropy")]
    assert len(steps) == 4
    assert steps == sorted(set(steps))


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_tracking_server_lets_the_fit_complete_with_a_warning(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    monkeypatch.chdir(tmp_path)
    logger = ResilientMLFlowLogger(experiment_name="down", tracking_uri=f"http://127.0.0.1:{_closed_port()}")
    trainer = pl.Trainer(logger=logger, callbacks=[XentMonitor()], **fit_kwargs(max_epochs=2))
    with pytest.warns(UserWarning, match="could not log"):
        trainer.fit(TinyClassifier(), make_loader(16), make_loader(16))
    assert trainer.current_epoch == 2
    unsent = list(tmp_path.glob("mlflow_unsent_*.jsonl"))
    assert unsent and "val/cross_entropy" in unsent[0].read_text()
