"""Tiny real Lightning models and data for the callback tests, importable by spawned DDP workers."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from mlflow.tracking import MlflowClient
from torch.utils.data import DataLoader, TensorDataset


class TinyClassifierSteps:
    """A linear classifier that returns its predictions and records what it returned, per stage and epoch; mixed
    into either Lightning namespace's LightningModule."""

    def __init__(
        self, num_features: int = 5, num_classes: int = 3, task: str = "multiclass", with_reference=False, lr=0.1
    ):
        super().__init__()
        self.lr = lr
        out = 1 if task == "binary" else num_classes
        self.layer = torch.nn.Linear(num_features, out)
        self.task = task
        self.with_reference = with_reference
        self.returned: dict[str, list] = {}

    def forward(self, x):
        logits = self.layer(x)
        return logits.squeeze(-1) if self.task == "binary" else logits

    def training_step(self, batch, batch_idx):
        x, y = batch[0], batch[1]
        logits = self(x)
        if self.task == "binary":
            loss = F.binary_cross_entropy_with_logits(logits, y.float())
        else:
            loss = F.cross_entropy(logits, y)
        return {"loss": loss, "logits": logits.detach(), "target": y}

    def _eval_step(self, batch, stage):
        x, y = batch[0], batch[1]
        out = {"logits": self(x), "target": y}
        if self.with_reference:
            out["reference"] = batch[2]
        key = f"{stage}/{self.current_epoch}"
        self.returned.setdefault(key, []).append({k: v.detach().clone() for k, v in out.items()})
        return out

    def validation_step(self, batch, batch_idx):
        return self._eval_step(batch, "val")

    def test_step(self, batch, batch_idx):
        return self._eval_step(batch, "test")

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr)


class TinyClassifier(TinyClassifierSteps, pl.LightningModule):
    """:class:`TinyClassifierSteps` as a ``pytorch_lightning`` module."""


def tiny_classifier_class(lightning_module: type) -> type:
    """:class:`TinyClassifierSteps` on ``lightning_module``, the LightningModule of ``pytorch_lightning`` or of
    ``lightning.pytorch``."""
    return type("TinyClassifier", (TinyClassifierSteps, lightning_module), {})


def make_loader(n: int, num_classes: int = 3, task: str = "multiclass", with_reference=False, batch_size=8, seed=0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 5, generator=generator)
    if task == "binary":
        y = torch.randint(0, 2, (n,), generator=generator)
    else:
        y = torch.randint(0, num_classes, (n,), generator=generator)
    tensors = [x, y]
    if with_reference:
        tensors.append(torch.softmax(torch.randn(n, num_classes, generator=generator), dim=1))
    return DataLoader(TensorDataset(*tensors), batch_size=batch_size)


def concat(returned: list[dict], key: str) -> torch.Tensor:
    return torch.cat([item[key] for item in returned])


def metric_history(logger, key: str) -> list[tuple[int, float]]:
    client = MlflowClient(tracking_uri=logger._tracking_uri)
    return [(m.step, m.value) for m in client.get_metric_history(logger.run_id, key)]


def fit_kwargs(**overrides):
    kwargs = dict(
        accelerator="cpu",
        devices=1,
        max_epochs=2,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        num_sanity_val_steps=0,
    )
    kwargs.update(overrides)
    return kwargs
