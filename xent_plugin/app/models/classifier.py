"""LightningModule that trains any of the networks with cross-entropy and hands logits to the metric callbacks."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import pytorch_lightning as pl
import torch.nn.functional as F
from torch import Tensor, nn
from torch.optim import Optimizer

from xent_plugin.app.models._task import check_task
from xent_plugin.functional._validation import check_int

OptimizerFactory = Callable[[Iterable[nn.Parameter]], Optimizer]
SchedulerFactory = Callable[[Optimizer], Any]


class XentClassifier(pl.LightningModule):
    """Cross-entropy training of ``net`` on dict batches ``{"x", "y"}`` (and ``"probs"`` where known).

    The loss is ``F.cross_entropy`` for ``task="multiclass"``: logits (B, C), or class-last token logits
    (B, T, V) flattened to (B*T, V) with ``ignore_index``; and ``F.binary_cross_entropy_with_logits`` on logits
    (B,) for ``task="binary"``. Every step returns ``loss``, ``logits`` and ``target``; validation and test steps
    add ``reference`` (the batch's ``probs``) when the batch has it, for the metric callbacks.

    Only ``task`` and ``ignore_index`` are saved as hyperparameters, so checkpoints load with PyTorch's default
    ``weights_only=True``: pass the network again, ``XentClassifier.load_from_checkpoint(path, net=net)``.

    Args:
        net: maps ``batch["x"]`` to logits.
        optimizer: called with the parameters to build the optimizer (Hydra: ``_partial_: true``); needed only
            to train.
        scheduler: optional, called with the optimizer to build a learning-rate scheduler, stepped each epoch;
            ``ReduceLROnPlateau`` watches ``val/loss``.
        task: ``"multiclass"`` or ``"binary"``.
        ignore_index: target value that does not count towards the multiclass loss (padding).

    Example:
        >>> import functools, torch
        >>> model = XentClassifier(nn.Linear(3, 4), functools.partial(torch.optim.SGD, lr=0.1))
        >>> model.step({"x": torch.zeros(2, 3), "y": torch.tensor([0, 1])})["logits"].shape
        torch.Size([2, 4])
    """

    def __init__(
        self,
        net: nn.Module,
        optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
        task: str = "multiclass",
        ignore_index: int = -100,
    ) -> None:
        super().__init__()
        check_task(task)
        check_int("ignore_index", ignore_index)
        # Optimizer and scheduler factories are arbitrary callables: pickling them into the checkpoint would
        # make it unloadable with weights_only=True. The Hydra config records them instead.
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler"])
        self.net = net
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.task = task
        self.ignore_index = ignore_index

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def loss(self, logits: Tensor, target: Tensor) -> Tensor:
        if self.task == "binary":
            return F.binary_cross_entropy_with_logits(logits, target.to(logits.dtype))
        return F.cross_entropy(logits.flatten(0, -2), target.flatten(), ignore_index=self.ignore_index)

    def step(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Forward pass and loss on one batch: ``{"loss", "logits", "target"}`` (+ ``"reference"``)."""
        logits = self(batch["x"])
        output = {"loss": self.loss(logits, batch["y"]), "logits": logits, "target": batch["y"]}
        if "probs" in batch:
            output["reference"] = batch["probs"]
        return output

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Tensor]:
        output = self.step(batch)
        self.log("train/loss", output["loss"], prog_bar=True, batch_size=len(batch["y"]))
        return {"loss": output["loss"], "logits": output["logits"].detach(), "target": output["target"]}

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Tensor]:
        return self._evaluation_step("val", batch)

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Tensor]:
        return self._evaluation_step("test", batch)

    def configure_optimizers(self) -> dict[str, Any]:
        if self.optimizer_factory is None:
            raise ValueError("`optimizer` is needed to train: pass a callable mapping parameters to an optimizer.")
        optimizer = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            return {"optimizer": optimizer}
        scheduler = self.scheduler_factory(optimizer)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "epoch", "monitor": "val/loss"},
        }

    def _evaluation_step(self, stage: str, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        output = self.step(batch)
        counted = self._counted_targets(batch["y"])
        # Synced: under DDP each rank holds a part of the epoch, and the logged loss must be the whole epoch's,
        # as XentMonitor's cross-entropy is (the two then agree).
        self.log(f"{stage}/loss", output["loss"], on_step=False, on_epoch=True, batch_size=counted, sync_dist=True)
        return output

    def _counted_targets(self, target: Tensor) -> int:
        # Lightning averages logged values over the epoch weighted by batch_size; weighting by the targets that
        # count makes the epoch loss the exact per-target mean even when padding differs between batches.
        if self.task == "binary":
            return target.numel()
        return int((target != self.ignore_index).sum())
