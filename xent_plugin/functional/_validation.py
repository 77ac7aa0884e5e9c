"""Checks on arguments and tensors, shared by every metric that takes the same inputs.

Argument checks run once, at construction (and at each call of a functional form); type checks of tensor
arguments cost nothing and always run. Tensor checks that need a pass over the data are done on the per-row
statistics the softmax pass produces anyway (a NaN or +inf logit makes the row maximum non-finite), so
validating costs O(rows), not O(rows x classes). Each tensor check reads one flag back to the host on the
happy path, whatever the number of conditions it tests; the details for the message are read only on failure.
Rows whose target is ``ignore_index`` are never checked, as ``F.cross_entropy`` never reads them.
"""

from __future__ import annotations

from collections.abc import Collection

import torch
from torch import Tensor

INPUT_FORMATS = ("logits", "probs", "log_probs")
NORMS = ("l1", "l2", "max")


def check_choice(name: str, value: object, choices: Collection[object]) -> None:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"`{name}` must be one of {tuple(choices)}, got {value!r}.")


def check_flag(name: str, value: object) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"`{name}` must be True or False, got {value!r} ({type(value).__name__}).")


def check_int(name: str, value: object, minimum: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or (minimum is not None and value < minimum):
        bound = "" if minimum is None else f" >= {minimum}"
        raise ValueError(f"`{name}` must be an integer{bound}, got {value!r} ({type(value).__name__}).")


def check_n_bins(n_bins: object, name: str = "n_bins") -> None:
    check_int(name, n_bins, minimum=1)


def check_class_dim(class_dim: object) -> None:
    check_int("class_dim", class_dim)


def check_label_smoothing(label_smoothing: object) -> None:
    if (
        isinstance(label_smoothing, bool)
        or not isinstance(label_smoothing, (int, float))
        or not 0.0 <= label_smoothing <= 1.0
    ):
        raise ValueError(f"`label_smoothing` must be a float in [0, 1], got {label_smoothing!r}.")


def check_ignore_index(ignore_index: object) -> None:
    if ignore_index is not None and (isinstance(ignore_index, bool) or not isinstance(ignore_index, int)):
        raise ValueError(f"`ignore_index` must be an int or None, got {ignore_index!r}.")


def check_tensor(name: str, tensor: object) -> None:
    if not isinstance(tensor, Tensor):
        raise TypeError(f"`{name}` must be a torch.Tensor, got {type(tensor).__name__}.")


def check_floating(name: str, tensor: object) -> None:
    check_tensor(name, tensor)
    if not tensor.is_floating_point():
        raise TypeError(f"`{name}` must be a floating-point tensor, got dtype {tensor.dtype}.")


def probability_tolerance(dtype: torch.dtype) -> float:
    """How far a row of probabilities may sum from 1 and still be accepted."""
    return 1e-2 if torch.finfo(dtype).bits <= 16 else 1e-4


def check_score_rows(
    name: str,
    row_max: Tensor,
    input_format: str,
    *,
    counted: Tensor | None = None,
    row_sums: Tensor | None = None,
    sums_dtype: torch.dtype | None = None,
    probs: Tensor | None = None,
) -> None:
    """Rows of scores: maxima finite, and for ``"probs"`` values in [0, 1] and rows summing to 1.

    ``row_max`` is each row's maximum score: NaN or +inf for a NaN or +inf entry, -inf when every class is
    masked. ``probs`` (the raw (R, C) probabilities) and ``row_sums`` (checked against ``sums_dtype``'s
    tolerance) are given for ``input_format="probs"``. Rows where ``counted`` is False are skipped.
    """
    finite = torch.isfinite(row_max)
    bad_rows = ~finite
    if row_sums is not None:
        # NaN sums belong to rows that the maximum already rejects.
        bad_sums = (row_sums - 1).abs() > probability_tolerance(sums_dtype)
        bad_rows = bad_rows | bad_sums
    if probs is not None:
        bad_values = ((probs < 0) | (probs > 1)).any(dim=1)
        bad_rows = bad_rows | bad_values
    if counted is not None:
        bad_rows = bad_rows & counted
    if not bool(bad_rows.any()):
        return
    row = int(bad_rows.nonzero()[0, 0])
    if probs is not None and bool(bad_values[row]):
        counted_probs = probs if counted is None else probs[counted]
        finite_probs = counted_probs[~counted_probs.isnan()]
        raise ValueError(
            f"`{name}` must hold probabilities in [0, 1], found values in "
            f"[{finite_probs.min().item():.6g}, {finite_probs.max().item():.6g}]."
        )
    bad = row_max[row].item()
    if bad != bad:
        raise ValueError(f"`{name}` contains NaN ({input_format}); check the model's outputs.")
    if bad > 0:
        raise ValueError(f"`{name}` contains +inf ({input_format}); only -inf (a masked class) is allowed.")
    if input_format == "probs" and bad == float("-inf"):
        raise ValueError(f"`{name}` rows must sum to 1 when given as probabilities; found a row of zeros.")
    if bad == float("-inf"):
        raise ValueError(f"`{name}` has a row where every class is -inf ({input_format}): no distribution is left.")
    raise ValueError(
        f"`{name}` rows must sum to 1 (tolerance {probability_tolerance(sums_dtype):g}) when given as "
        f"probabilities; found a row summing to {row_sums[row].item():.6g}."
    )


def check_probability_rows(name: str, row_sums: Tensor, dtype: torch.dtype) -> None:
    deviation = (row_sums - 1).abs()
    tolerance = probability_tolerance(dtype)
    if bool((deviation > tolerance).any()):
        worst = row_sums[deviation.argmax()].item()
        raise ValueError(
            f"`{name}` rows must sum to 1 (tolerance {tolerance:g}) when given as probabilities; "
            f"found a row summing to {worst:.6g}."
        )


def check_probabilities(name: str, probs: Tensor, dtype: torch.dtype, class_dim: int = 1) -> None:
    """A tensor of distributions given as probabilities: no NaN, values in [0, 1], rows summing to 1."""
    row_sums = probs.sum(dim=class_dim, dtype=torch.float64)
    bad_values = probs.isnan() | (probs < 0) | (probs > 1)
    bad_sums = (row_sums - 1).abs() > probability_tolerance(dtype)
    if not bool(bad_values.any() | bad_sums.any()):
        return
    check_probability_values(name, probs)
    check_probability_rows(name, row_sums, dtype)


def check_probability_values(name: str, probs: Tensor) -> None:
    """No NaN and values in [0, 1]; one flag read on the happy path, and an empty tensor passes."""
    if not bool((probs.isnan() | (probs < 0) | (probs > 1)).any()):
        return
    if bool(probs.isnan().any()):
        raise ValueError(f"`{name}` contains NaN.")
    raise ValueError(
        f"`{name}` must hold probabilities in [0, 1], found values in "
        f"[{probs.min().item():.6g}, {probs.max().item():.6g}]."
    )


def check_class_indices(target: Tensor, num_classes: int, ignore_index: int | None) -> None:
    if target.is_floating_point() or target.dtype == torch.bool:
        raise TypeError(f"`target` as class indices must be an integer tensor, got dtype {target.dtype}.")
    outside = (target < 0) | (target >= num_classes)
    if ignore_index is not None:
        outside &= target != ignore_index
    if not bool(outside.any()):
        return
    counted = target if ignore_index is None else target[target != ignore_index]
    low, high = counted.min().item(), counted.max().item()
    bad = low if low < 0 else high
    hint = "" if ignore_index is None else f" other than ignore_index={ignore_index}"
    raise ValueError(
        f"`target` holds class index {bad}, outside [0, {num_classes - 1}] for {num_classes} classes{hint}."
    )


def check_distribution(name: str, values: Tensor, input_format: str, class_dim: int) -> None:
    """A whole tensor of distributions in ``input_format``, checked with its own dtype's tolerance."""
    if input_format == "probs":
        check_probabilities(name, values, values.dtype, class_dim)
        return
    all_masked = torch.isneginf(values).all(dim=class_dim)
    if not bool(values.isnan().any() | values.isposinf().any() | all_masked.any()):
        return
    if bool(values.isnan().any()):
        raise ValueError(f"`{name}` contains NaN ({input_format}).")
    if bool(values.isposinf().any()):
        raise ValueError(f"`{name}` contains +inf ({input_format}); only -inf (a masked class) is allowed.")
    raise ValueError(f"`{name}` has a row where every class is -inf ({input_format}): no distribution is left.")
