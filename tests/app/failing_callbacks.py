"""Callbacks that break a run on purpose, selected from the command line with ``+callbacks.<name>._target_=...``.

A ``xent-train`` subprocess imports them as ``tests.app.failing_callbacks`` when the repository root is on its
``PYTHONPATH`` (:func:`tests.app.xent_train_runs.start_xent_train` puts it there).
"""

from __future__ import annotations

import os
import signal

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback


class RaiseAtTrainEpochEnd(Callback):
    """Fails the first training epoch, after the MLflow run exists."""

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        raise RuntimeError("deliberate failure at the end of training epoch 0")


class SignalAtEpochStart(Callback):
    """Sends this process the signal ``name`` (``"SIGTERM"``, ``"SIGHUP"``) as training epoch ``epoch`` starts,
    as ``kill`` or a closing terminal would, mid-run."""

    def __init__(self, name: str, epoch: int = 1) -> None:
        self.signum = signal.Signals[name]
        self.epoch = epoch

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch == self.epoch:
            os.kill(os.getpid(), self.signum)


class SignalAtFitEnd(Callback):
    """Sends this process the signal ``name`` as ``fit`` ends: training is done, so Lightning's own SIGTERM
    handling (stop at the next batch) no longer applies."""

    def __init__(self, name: str) -> None:
        self.signum = signal.Signals[name]

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        os.kill(os.getpid(), self.signum)
