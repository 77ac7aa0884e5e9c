"""Reads a reliability table, as :func:`xent_plugin.functional.calibration_error.reliability_table` returns
it, into float64 NumPy columns: the one form that the diagram and the JSON artifact are drawn from.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from torch import Tensor

RELIABILITY_COLUMNS = ("lower", "upper", "count", "confidence", "accuracy")

ReliabilityTable = Mapping[str, "Sequence[float] | Tensor | np.ndarray"]


def reliability_columns(table: ReliabilityTable) -> dict[str, np.ndarray]:
    """Copies the five per-bin columns of ``table`` into 1-D float64 arrays of equal length.

    The copy is deliberate: a background upload then sees the values of the step it was asked to log, even if
    the caller reuses its tensors.

    Example:
        >>> import torch
        >>> table = {"lower": [0.0, 0.5], "upper": [0.5, 1.0], "count": torch.tensor([0.0, 2.0]),
        ...          "confidence": [float("nan"), 0.8], "accuracy": [float("nan"), 1.0]}
        >>> reliability_columns(table)["count"]
        array([0., 2.])
    """
    missing = [name for name in RELIABILITY_COLUMNS if name not in table]
    if missing:
        raise ValueError(f"`table` must have the columns {RELIABILITY_COLUMNS}, it lacks {missing}.")
    columns = {name: _float_column(name, table[name]) for name in RELIABILITY_COLUMNS}
    lengths = {name: len(column) for name, column in columns.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"`table` columns must have one entry per bin, all as long, got lengths {lengths}.")
    return columns


def _float_column(name: str, column: Sequence[float] | Tensor | np.ndarray) -> np.ndarray:
    if isinstance(column, Tensor):
        column = column.detach().cpu()
    array = np.array(column, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"`table[{name!r}]` must be 1-D (one entry per bin), got shape {array.shape}.")
    return array
