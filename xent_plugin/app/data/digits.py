"""scikit-learn's bundled 8x8 handwritten digits (1,797 images, 10 classes); nothing is downloaded."""

from __future__ import annotations

import torch
from sklearn.datasets import load_digits
from torch import Tensor

from xent_plugin.app.data._base import InMemoryDataModule


class DigitsDataModule(InMemoryDataModule):
    """Digits as images: ``x`` float32 (B, 1, 8, 8) in [0, 1], ``y`` int64 (B,) in 0..9.

    Args:
        batch_size: rows per batch.
        seed: fixes the split and the training shuffle.
        num_workers: DataLoader worker processes.
        val_fraction: share of rows held out for validation.
        test_fraction: share of rows held out for testing.

    Example:
        >>> datamodule = DigitsDataModule(batch_size=4, seed=0)
        >>> datamodule.setup()
        >>> batch = next(iter(datamodule.train_dataloader()))
        >>> batch["x"].shape, batch["y"].dtype, datamodule.input_dim
        (torch.Size([4, 1, 8, 8]), torch.int64, 64)
    """

    num_classes = 10
    input_shape = (1, 8, 8)
    input_dim = 64

    def build_columns(self) -> dict[str, Tensor]:
        digits = load_digits()
        # Pixel values are integer counts in 0..16 (4x4 blocks of a 32x32 bitmap).
        images = torch.as_tensor(digits.images, dtype=torch.float32) / 16.0
        return {"x": images.unsqueeze(1), "y": torch.as_tensor(digits.target, dtype=torch.int64)}
