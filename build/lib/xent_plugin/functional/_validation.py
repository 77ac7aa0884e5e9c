"""Checks on arguments and tensors, shared by every metric that takes the same inputs.

Argument checks run once, at construction. Tensor checks that need a pass over the data are done on the
per-row statistics the softmax pass produces anyway (a NaN or +inf logit makes the row maximum non-finite),
so validating costs O(rows), not O(rows x classes).
"""

from __future__ import annotations

from collections.abc import Collection

import torch
from torch import Tensor

INPUT_FORMATS = ("logits", "probs", "log_probs")
NORMS = ("l1", "l2", "max")


def check_choice(name: str, value: object, choices: Collection[object]) -> None:
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {tuple(choices)}, got {value!r}.")


def check_n_bins(n_bins: object) -> None:
    if isinstance(n_bins, bool) or not isinstance(n_bins, int) or n_bins < 1:
        raise ValueError(f"`n_bins` must be an integer >= 1, got {n_bins!r}.")


def check_label_smoothing(label_smoothing: object) -> None:
    if not isinstance(label_smoothing, (int, float)) or not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"`label_smoothing` must be a float in [0, 1], got {label_smoothing!r}.")


def check_ignore_index(ignore_index: object) -> None:
    if ignore_index is not None and (isinstance(ignore_index, bool) or not isinstance(ignore_index, int)):
        raise ValueError(f"`ignore_index` must be an int or None, got {ignore_index!r}.")


def check_floating(name: str, tensor: object) -> None:
    if not isinstance(tensor, Tensor):
        raise TypeError(f"`{name}` must be a torch.Tensor, got {type(tensor).__name__}.")
    if not tensor.is_floating_point():
        raise TypeError(f"`{name}` must be a floating-point tensor, got dtype {tensor.dtype}.")


def probability_tolerance(dtype: torch.dtype) -> float:
    """How far a row of probabilities may sum from 1 and still be accepted."""
    return 1e-2 if torch.finfo(dtype).bits <= 16 else 1e-4


def check_row_maxima(name: str, row_max: Tensor, input_format: str) -> None:
    """Reject rows whose maximum is NaN or +inf (a NaN or +inf entry) or -inf (every class masked)."""
    if bool(torch.isfinite(row_max).all()):
        return
    bad = row_max[~torch.isfinite(row_max)][0].item()
    if bad != bad:
        raise ValueError(f"`{name}` contains NaN ({input_format}); check the model's outputs.")
    if bad > 0:
        raise ValueError(f"`{name}` contains +inf ({input_format}); only -inf (a masked class) is allowed.")
    if input_format == "probs":
        raise ValueError(f"`{name}` rows must sum to 1 when given as probabilities; found a row of zeros.")
    raise ValueError(f"`{name}` has a row where every class is -inf ({input_format}): no distribution is left.")


def check_probability_rows(name: str, row_sums: Tensor, dtype: torch.dtype) -> None:
    deviation = (row_sums - 1).abs()
    tolerance = probability_tolerance(dtype)
    if bool((deviation > tolerance).any()):
        worst = row_sums[deviation.argmax()].item()
        raise ValueError(
            f"`{name}` rows must sum to 1 (tolerance {tolerance:g}) when given as probabilities; "
            f"found a row summing to {worst:.6g}."
        )


def check_probability_values(name: str, probs: Tensor) -> None:
    if bool(torch.isnan(probs).any()):
        raise ValueError(f"`{name}` contains NaN.")
    low, high = probs.min().item(), probs.max().item()
    if low < 0 or high > 1:
        raise ValueError(f"`{name}` must hold probabilities in [0, 1], found values in [{low:.6g}, {high:.6g}].")


def check_class_indices(target: Tensor, num_classes: int, ignore_index: int | None) -> None:
    if target.is_floating_point() or target.dtype == torch.bool:
        raise TypeError(f"`target` as class indices must be an integer tensor, got dtype {target.dtype}.")
    counted = target if ignore_index is None else target[target != ignore_index]
    if counted.numel() == 0:
        return
    low, high = counted.min().item(), counted.max().item()
    if low < 0 or high >= num_classes:
        bad = low if low < 0 else high
        hint = "" if ignore_index is None else f" other than ignore_index={ignore_index}"
        raise ValueError(
            f"`target` holds class index {bad}, outside [0, {num_classes - 1}] for {num_classes} classes{hint}."
        )


def check_distribution(name: str, values: Tensor, input_format: str, class_dim: int) -> None:
    """A whole tensor of distributions in ``input_format``, checked with its own dtype's tolerance."""
    if bool(torch.isnan(values).any()):
        raise ValueError(f"`{name}` contains NaN ({input_format}).")
    if bool(torch.isposinf(values).any()):
        raise ValueError(f"`{name}` contains +inf ({input_format}); only -inf (a masked class) is allowed.")
    if input_format == "probs":
        check_probability_values(name, values)
        check_probability_rows(name, values.sum(dim=class_dim, dtype=torch.float64), values.dtype)
    elif bool(torch.isneginf(values).all(dim=class_dim).any()):
        raise ValueError(f"`{name}` has a row where every class is -inf ({input_format}): no distribution is left.")
