"""Turning float64 sums into values: the guarded mean every metric shares."""

from __future__ import annotations

import warnings

import torch
from torch import Tensor


def mean_or_nan(total: Tensor, count: Tensor, name: str) -> Tensor:
    """``total / count``, or NaN with a warning when nothing was counted (no update, or every row ignored)."""
    if count.item() == 0:
        warnings.warn(f"{name}: no samples were counted, returning NaN.", UserWarning, stacklevel=3)
        return torch.full_like(total, float("nan"))
    return total / count
