"""Callbacks that break a run on purpose, selected from the command line with ``+callbacks.<name>._target_=...``."""

from __future__ import annotations

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback


class RaiseAtTrainEpochEnd(Callback):
    """Fails the first training epoch, after the MLflow run exists."""

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        raise RuntimeError("deliberate failure at the end of training epoch 0")
