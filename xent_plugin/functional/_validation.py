"""Checks on arguments and tensors, shared by every metric that takes the same inputs.

Argument checks run once, at construction (and at each call of a functional form); type checks of tensor
arguments cost nothing and always run. Tensor checks that need a pass over the data are done on the per-row
statistics the softmax pass produces anyway (a NaN or +inf logit makes the row maximum non-finite), so
validating costs O(rows), not O(rows x classes). Each tensor check reads one flag back to the host on the
happy path, whatever the number of conditions it tests; the details for the message are read only on failure.
The passes queue these checks instead (:class:`DeferredChecks`): one flag per update, read after the pass.
Rows whose target is ``ignore_index`` are never checked, as ``F.cross_entropy`` never reads them.
"""

from __future__ import annotations

from collections.abc import Callable, Collection

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
    bad_rows = _bad_score_rows(row_max, counted, row_sums, sums_dtype, probs)
    if not bool(bad_rows.any()):
        return
    row = int(bad_rows.nonzero()[0, 0])
    if probs is not None and bool(((probs[row] < 0) | (probs[row] > 1)).any()):
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


def _bad_score_rows(
    row_max: Tensor,
    counted: Tensor | None,
    row_sums: Tensor | None,
    sums_dtype: torch.dtype | None,
    probs: Tensor | None,
) -> Tensor:
    """The rows :func:`check_score_rows` rejects, as a boolean mask."""
    bad_rows = ~torch.isfinite(row_max)
    if row_sums is not None:
        # NaN sums belong to rows that the maximum already rejects.
        bad_rows = bad_rows | ((row_sums - 1).abs() > probability_tolerance(sums_dtype))
    if probs is not None:
        bad_rows = bad_rows | ((probs < 0) | (probs > 1)).any(dim=1)
    if counted is not None:
        bad_rows = bad_rows & counted
    return bad_rows


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
    if not bool(_probabilities_failed(probs, dtype, class_dim)):
        return
    check_probability_values(name, probs)
    check_probability_rows(name, probs.sum(dim=class_dim, dtype=torch.float64), dtype)


def _probabilities_failed(probs: Tensor, dtype: torch.dtype, class_dim: int) -> Tensor:
    row_sums = probs.sum(dim=class_dim, dtype=torch.float64)
    bad_values = probs.isnan() | (probs < 0) | (probs > 1)
    return bad_values.any() | ((row_sums - 1).abs() > probability_tolerance(dtype)).any()


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
    if not bool(_class_indices_outside(target, num_classes, ignore_index).any()):
        return
    counted = target if ignore_index is None else target[target != ignore_index]
    low, high = counted.min().item(), counted.max().item()
    bad = low if low < 0 else high
    hint = "" if ignore_index is None else f" other than ignore_index={ignore_index}"
    raise ValueError(
        f"`target` holds class index {bad}, outside [0, {num_classes - 1}] for {num_classes} classes{hint}."
    )


def _class_indices_outside(target: Tensor, num_classes: int, ignore_index: int | None) -> Tensor:
    outside = (target < 0) | (target >= num_classes)
    if ignore_index is not None:
        outside &= target != ignore_index
    return outside


def check_distribution(name: str, values: Tensor, input_format: str, class_dim: int) -> None:
    """A whole tensor of distributions in ``input_format``, checked with its own dtype's tolerance."""
    if input_format == "probs":
        check_probabilities(name, values, values.dtype, class_dim)
        return
    if not bool(_distribution_failed(values, input_format, class_dim)):
        return
    if bool(values.isnan().any()):
        raise ValueError(f"`{name}` contains NaN ({input_format}).")
    if bool(values.isposinf().any()):
        raise ValueError(f"`{name}` contains +inf ({input_format}); only -inf (a masked class) is allowed.")
    raise ValueError(f"`{name}` has a row where every class is -inf ({input_format}): no distribution is left.")


def _distribution_failed(values: Tensor, input_format: str, class_dim: int) -> Tensor:
    if input_format == "probs":
        return _probabilities_failed(values, values.dtype, class_dim)
    return values.isnan().any() | values.isposinf().any() | torch.isneginf(values).all(dim=class_dim).any()


class DeferredChecks:
    """The tensor checks of one update, read back from the device together: one sync however many there are.

    Each check is queued as a device-side boolean "failed" and the check function that explains it. A check
    that reads its verdict at once (``bool(tensor)``, ``.item()``) stalls a GPU stream until everything queued
    before it has run; queued here, the verdicts of a whole batch come back in one read at
    :meth:`raise_if_failed`, and only a failed check pays for its message (more reads, on the way to an error).

    Example:
        >>> checks = DeferredChecks()
        >>> defer_score_rows(checks, "preds", torch.tensor([0.5, float("nan")]), "logits")
        >>> checks.raise_if_failed()
        Traceback (most recent call last):
        ...
        ValueError: `preds` contains NaN (logits); check the model's outputs.
    """

    def __init__(self) -> None:
        self._failed: list[Tensor] = []
        self._explain: list[Callable[[], None]] = []

    def add(self, failed: Tensor, explain: Callable[[], None]) -> None:
        self._failed.append(failed.reshape(()))
        self._explain.append(explain)

    def raise_if_failed(self) -> None:
        if not self._failed:
            return
        failed = torch.stack(self._failed)
        first_failed = int(torch.where(failed.any(), failed.int().argmax(), -1))  # the one read-back
        explain = self._explain
        self._failed, self._explain = [], []
        if first_failed >= 0:
            explain[first_failed]()


def defer_score_rows(
    checks: DeferredChecks,
    name: str,
    row_max: Tensor,
    input_format: str,
    *,
    counted: Tensor | None = None,
    row_sums: Tensor | None = None,
    sums_dtype: torch.dtype | None = None,
    probs: Tensor | None = None,
) -> None:
    """:func:`check_score_rows`, queued."""
    failed = _bad_score_rows(row_max, counted, row_sums, sums_dtype, probs).any()
    checks.add(
        failed,
        lambda: check_score_rows(
            name, row_max, input_format, counted=counted, row_sums=row_sums, sums_dtype=sums_dtype, probs=probs
        ),
    )


def defer_probabilities(checks: DeferredChecks, name: str, probs: Tensor, dtype: torch.dtype) -> None:
    """:func:`check_probabilities`, queued."""
    checks.add(_probabilities_failed(probs, dtype, 1), lambda: check_probabilities(name, probs, dtype))


def defer_distribution(checks: DeferredChecks, name: str, values: Tensor, input_format: str, class_dim: int) -> None:
    """:func:`check_distribution`, queued."""
    failed = _distribution_failed(values, input_format, class_dim)
    checks.add(failed, lambda: check_distribution(name, values, input_format, class_dim))


def defer_class_indices(checks: DeferredChecks, target: Tensor, num_classes: int, ignore_index: int | None) -> Tensor:
    """:func:`check_class_indices`, queued; returns ``target`` with the indices out of range replaced by 0.

    The pass runs before the verdict is read, and an index out of range must not reach an indexing kernel
    (an error on CPU, a device-side assert on CUDA) before the check can say what was wrong.
    """
    if target.is_floating_point() or target.dtype == torch.bool:
        check_class_indices(target, num_classes, ignore_index)  # raises: the dtype is wrong, no data needed
    outside = _class_indices_outside(target, num_classes, ignore_index)
    checks.add(outside.any(), lambda: check_class_indices(target, num_classes, ignore_index))
    return target.masked_fill(outside, 0)
