"""A user's own modules and callbacks that go wrong in one way each, plugged in from the command line.

Models replace ``model._target_`` (``xent-train model._target_=tests.e2e.plugins.LogitlessClassifier``) and
callbacks are added with ``+callbacks.<name>._target_=...``, the way issue 4 lets users plug in their own code,
so each failure takes the same path from ``xent-train`` as from ``train()``. ``xent-train`` imports them as
``tests.e2e.plugins`` because the tests put the repository root on ``PYTHONPATH``.
"""

from __future__ import annotations

import os
import signal

import pytorch_lightning as pl
import torch
from torch import Tensor

from xent_plugin.app.models import XentClassifier


class LogitlessClassifier(XentClassifier):
    """Its validation step returns the loss and the target, but no ``logits``/``probs``/``log_probs``."""

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Tensor]:
        output = super().validation_step(batch, batch_idx)
        return {"loss": output["loss"], "target": output["target"]}


class NaNLogitsClassifier(XentClassifier):
    """Trains normally, but from epoch ``nan_epoch`` on, validation batch ``nan_batch`` gets NaN logits.

    As when activations overflow part-way through training: earlier epochs log normally.
    """

    nan_epoch = 1
    nan_batch = 1

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Tensor]:
        output = super().validation_step(batch, batch_idx)
        if self.current_epoch >= self.nan_epoch and batch_idx == self.nan_batch:
            output["logits"] = torch.full_like(output["logits"], float("nan"))
        return output


class TruncatedLogitsClassifier(XentClassifier):
    """Its validation step returns logits for one row fewer than the targets (a slicing bug in user code)."""

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Tensor]:
        output = super().validation_step(batch, batch_idx)
        output["logits"] = output["logits"][:-1]
        return output


class ShiftedTargetClassifier(XentClassifier):
    """Trains on the true labels but hands XentMonitor ``target + num_classes``: every target out of range."""

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Tensor]:
        output = super().validation_step(batch, batch_idx)
        output["target"] = output["target"] + output["logits"].shape[-1]
        return output


class InterruptAtEpochStart(pl.Callback):
    """Presses Ctrl-C as training epoch ``epoch`` starts: every earlier epoch is complete, checkpoint included.

    The interrupt is a real SIGINT to this process, as a terminal sends it; Lightning shuts down gracefully.
    """

    def __init__(self, epoch: int = 2) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch == self.epoch:
            _press_ctrl_c()


class InterruptAtEpochEnd(pl.Callback):
    """Presses Ctrl-C while training epoch ``epoch`` ends: after its validation metrics were logged, before
    ``ModelCheckpoint`` (a monitoring callback, so Lightning calls it after this one) writes its checkpoint."""

    def __init__(self, epoch: int = 1) -> None:
        self.epoch = epoch

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch == self.epoch:
            _press_ctrl_c()


class CrashAtEpoch(pl.Callback):
    """Raises at the start of training epoch ``epoch``, like a bug in user code part-way through a run."""

    def __init__(self, epoch: int = 1) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch == self.epoch:
            raise RuntimeError(f"CrashAtEpoch: a deliberate crash at the start of epoch {self.epoch}")


def _press_ctrl_c() -> None:
    """SIGINT to this process with Python's own handler in place, as in a terminal's foreground process: a
    process started from a background job inherits SIGINT ignored, and would then run on."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    os.kill(os.getpid(), signal.SIGINT)
