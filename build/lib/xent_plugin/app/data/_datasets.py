"""In-memory dataset whose items are dicts of tensors, so batches arrive as ``{"x": ..., "y": ...}``."""

from __future__ import annotations

from torch import Tensor
from torch.utils.data import Dataset


class TensorDictDataset(Dataset):
    """Row ``i`` of every tensor in ``columns``, as a dict with the same keys.

    Example:
        >>> import torch
        >>> dataset = TensorDictDataset({"x": torch.zeros(3, 2), "y": torch.arange(3)})
        >>> len(dataset), dataset[2]["y"]
        (3, tensor(2))
    """

    def __init__(self, columns: dict[str, Tensor]) -> None:
        lengths = {name: len(column) for name, column in columns.items()}
        if len(set(lengths.values())) != 1:
            raise ValueError(f"every column must have the same number of rows, got {lengths}.")
        self.columns = columns

    def __len__(self) -> int:
        return len(next(iter(self.columns.values())))

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        return {name: column[index] for name, column in self.columns.items()}
