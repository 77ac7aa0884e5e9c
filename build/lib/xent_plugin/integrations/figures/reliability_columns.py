"""Reads a reliability table, as :func:`xent_plugin.functional.calibration_error.reliability_table` returns
it, and a smoothed reliability curve, as
:func:`xent_plugin.functional.smooth_calibration_error.smooth_reliability_curve` returns it, into float64
NumPy columns: the one form that the diagram and the JSON artifact are drawn from.

Both readers copy on purpose: a background upload then sees the values of the step it was asked to log, even
if the caller reuses its tensors.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from torch import Tensor

RELIABILITY_COLUMNS = ("lower", "upper", "count", "confidence", "accuracy")
# Per-bin intervals, as BootstrapIntervals.reliability_table adds them; each comes as a (lower, upper) pair.
INTERVAL_COLUMNS = ("accuracy_lower", "accuracy_upper", "confidence_lower", "confidence_upper")

SMOOTH_CURVE_COLUMNS = ("confidence", "accuracy", "lower", "upper")
SMOOTH_CURVE_OPTIONAL_COLUMNS = ("density",)
SMOOTH_CURVE_SCALARS = ("smooth_ece", "bandwidth")

ReliabilityTable = Mapping[str, "Sequence[float] | Tensor | np.ndarray"]
SmoothCurve = Mapping[str, "Sequence[float] | Tensor | np.ndarray | float"]


def reliability_columns(table: ReliabilityTable) -> dict[str, np.ndarray]:
    """Copies the five per-bin columns of ``table``, and those of :data:`INTERVAL_COLUMNS` it has, into 1-D
    float64 arrays of equal length. NaN is kept (empty bins); other keys of ``table`` are ignored.

    Example:
        >>> import torch
        >>> table = {"lower": [0.0, 0.5], "upper": [0.5, 1.0], "count": torch.tensor([0.0, 2.0]),
        ...          "confidence": [float("nan"), 0.8], "accuracy": [float("nan"), 1.0]}
        >>> reliability_columns(table)["count"]
        array([0., 2.])
        >>> table.update(accuracy_lower=[float("nan"), 0.6], accuracy_upper=[float("nan"), 1.0])
        >>> list(reliability_columns(table))
        ['lower', 'upper', 'count', 'confidence', 'accuracy', 'accuracy_lower', 'accuracy_upper']
    """
    missing = [name for name in RELIABILITY_COLUMNS if name not in table]
    if missing:
        raise ValueError(f"`table` must have the columns {RELIABILITY_COLUMNS}, it lacks {missing}.")
    for lower, upper in zip(INTERVAL_COLUMNS[::2], INTERVAL_COLUMNS[1::2], strict=True):
        if (lower in table) != (upper in table):
            given, absent = (lower, upper) if lower in table else (upper, lower)
            raise ValueError(f"`table` has {given!r} but not {absent!r}: an interval needs both ends.")
    names = RELIABILITY_COLUMNS + tuple(name for name in INTERVAL_COLUMNS if name in table)
    return _equal_length_columns("table", table, names, entry="bin")


def smooth_curve_columns(curve: SmoothCurve) -> dict[str, np.ndarray | float]:
    """Copies a smoothed reliability curve: ``confidence`` (the grid), ``accuracy`` and the band ``lower`` and
    ``upper`` (NaN where no data is near), and ``density`` if present, into 1-D float64 arrays of equal length;
    ``smooth_ece`` and ``bandwidth``, if present, into floats. Other keys are ignored.

    Example:
        >>> import torch
        >>> curve = {"confidence": torch.linspace(0, 1, 3), "accuracy": [float("nan"), 0.4, 0.9],
        ...          "lower": [float("nan"), 0.3, 0.8], "upper": [float("nan"), 0.5, 1.0],
        ...          "smooth_ece": torch.tensor(0.05, dtype=torch.float64)}
        >>> columns = smooth_curve_columns(curve)
        >>> columns["confidence"], columns["smooth_ece"]
        (array([0. , 0.5, 1. ]), 0.05)
    """
    missing = [name for name in SMOOTH_CURVE_COLUMNS if name not in curve]
    if missing:
        raise ValueError(f"`smooth_curve` must have the columns {SMOOTH_CURVE_COLUMNS}, it lacks {missing}.")
    names = SMOOTH_CURVE_COLUMNS + tuple(name for name in SMOOTH_CURVE_OPTIONAL_COLUMNS if name in curve)
    columns: dict[str, np.ndarray | float] = dict(
        _equal_length_columns("smooth_curve", curve, names, entry="grid point")
    )
    for name in SMOOTH_CURVE_SCALARS:
        if name in curve:
            columns[name] = _float_scalar(name, curve[name])
    return columns


def _equal_length_columns(
    argument: str,
    table: Mapping[str, Sequence[float] | Tensor | np.ndarray],
    names: Sequence[str],
    *,
    entry: str,
) -> dict[str, np.ndarray]:
    columns = {name: _float_column(argument, name, table[name], entry=entry) for name in names}
    lengths = {name: len(column) for name, column in columns.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"`{argument}` columns must have one entry per {entry}, all as long, got lengths {lengths}.")
    return columns


def _float_column(argument: str, name: str, column: Sequence[float] | Tensor | np.ndarray, *, entry: str) -> np.ndarray:
    if isinstance(column, Tensor):
        column = column.detach().cpu()
    array = np.array(column, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"`{argument}[{name!r}]` must be 1-D (one entry per {entry}), got shape {array.shape}.")
    return array


def _float_scalar(name: str, value: float | Tensor | np.ndarray) -> float:
    if isinstance(value, Tensor):
        value = value.detach().cpu()
    array = np.asarray(value, dtype=np.float64)
    if array.size != 1:
        raise ValueError(f"`smooth_curve[{name!r}]` must be a single number, got shape {array.shape}.")
    return float(array.reshape(()))
