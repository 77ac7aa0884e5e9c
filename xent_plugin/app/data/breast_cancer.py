"""scikit-learn's bundled Wisconsin breast-cancer table (569 rows, 30 features, binary); nothing is downloaded."""

from __future__ import annotations

import torch
from sklearn.datasets import load_breast_cancer
from torch import Tensor

from xent_plugin.app.data._base import InMemoryDataModule


class BreastCancerDataModule(InMemoryDataModule):
    """Binary classification: ``x`` float32 (B, 30) standardized with training-split statistics, ``y`` int64 0/1.

    Args:
        batch_size: rows per batch.
        seed: fixes the split and the training shuffle.
        num_workers: DataLoader worker processes.
        val_fraction: share of rows held out for validation.
        test_fraction: share of rows held out for testing.

    Example:
        >>> datamodule = BreastCancerDataModule(batch_size=8, seed=0)
        >>> datamodule.setup()
        >>> batch = next(iter(datamodule.val_dataloader()))
        >>> batch["x"].shape, datamodule.task, datamodule.num_classes
        (torch.Size([8, 30]), 'binary', 2)
    """

    task = "binary"
    num_classes = 2
    input_shape = (30,)
    input_dim = 30

    def build_columns(self) -> dict[str, Tensor]:
        table = load_breast_cancer()
        return {
            "x": torch.as_tensor(table.data, dtype=torch.float64),
            "y": torch.as_tensor(table.target, dtype=torch.int64),
        }

    def preprocess_splits(
        self, train: dict[str, Tensor], val: dict[str, Tensor], test: dict[str, Tensor]
    ) -> tuple[dict[str, Tensor], dict[str, Tensor], dict[str, Tensor]]:
        # Statistics from the training split only, so validation and test stay unseen.
        mean = train["x"].mean(dim=0)
        std = train["x"].std(dim=0)
        for split in (train, val, test):
            split["x"] = ((split["x"] - mean) / std).to(torch.float32)
        return train, val, test
