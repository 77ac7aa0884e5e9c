r"""The one pass over binary and multilabel scores that every binary metric reduces from.

Each entry is an independent Bernoulli prediction :math:`p = \sigma(z)`. From logits, :math:`\log p =
-\mathrm{softplus}(-z)` and :math:`\log(1 - p) = -\mathrm{softplus}(z)`, so no probability is ever logged
after rounding. Targets are 0/1 labels or soft labels in [0, 1].

Calibration has two modes for binary predictions:

- ``"top_label"``: confidence :math:`\max(p, 1 - p)` against whether the thresholded prediction is right,
  the binary case of multiclass top-label calibration;
- ``"positive"``: confidence :math:`p` against the label itself, the classic reliability diagram of a
  probabilistic classifier (torchmetrics' ``BinaryCalibrationError``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from xent_plugin.functional._validation import (
    DeferredChecks,
    check_choice,
    check_flag,
    check_floating,
    check_n_bins,
    check_tensor,
)
from xent_plugin.functional.softmax_stats import ACCUMULATE_DTYPE, bin_index

BINARY_INPUT_FORMATS = ("logits", "probs")
CALIBRATION_MODES = ("top_label", "positive")


@dataclass
class BinaryStats:
    """Float64 sums over the counted entries; ``bins`` is None, (3, n_bins), or (3, labels, n_bins) per label."""

    count: Tensor
    cross_entropy: Tensor
    entropy: Tensor
    brier: Tensor
    correct: Tensor
    bins: Tensor | None = None


def binary_stats(
    preds: Tensor,
    target: Tensor,
    *,
    input_format: str = "logits",
    ignore_index: int | None = None,
    n_bins: int | None = None,
    calibration_mode: str = "top_label",
    multilabel: bool = False,
    validate_args: bool = True,
) -> BinaryStats:
    """Reduce a batch of binary or multilabel predictions to float64 sums.

    Args:
        preds: logits or probabilities of the positive class, any shape; (N, L) for ``multilabel``.
        target: the same shape, 0/1 labels (integer or float) or soft labels in [0, 1].
        input_format: ``"logits"`` or ``"probs"``.
        ignore_index: a target value that marks entries not to count.
        n_bins: when given, also the reliability histogram, per label when ``multilabel``.
        calibration_mode: ``"top_label"`` or ``"positive"`` (see the module docstring).
        multilabel: whether the last dimension of ``preds`` holds separate labels.
        validate_args: check shapes, dtypes and values.

    Example:
        >>> stats = binary_stats(torch.tensor([0.0, 2.0]), torch.tensor([1, 1]))
        >>> round((stats.cross_entropy / stats.count).item(), 4)
        0.41
    """
    check_tensor("preds", preds)
    check_tensor("target", target)
    checks = None
    if validate_args:
        check_flag("multilabel", multilabel)
        check_choice("input_format", input_format, BINARY_INPUT_FORMATS)
        check_choice("calibration_mode", calibration_mode, CALIBRATION_MODES)
        check_floating("preds", preds)
        if n_bins is not None:
            check_n_bins(n_bins)
        checks = _check_binary_inputs(preds, target, input_format, ignore_index, multilabel)
    num_labels = preds.shape[-1] if multilabel else 1
    # Binary inputs have one score per entry, so float64 costs little; it also makes each entry's terms
    # independent of the batch it came in (float32 softplus rounds differently in vectorised and tail loops).
    compute_dtype = ACCUMULATE_DTYPE
    scores = preds.to(compute_dtype).reshape(-1, num_labels)
    labels = target.reshape(-1, num_labels)
    counted = None if ignore_index is None else labels != ignore_index
    labels = labels.to(compute_dtype)
    if counted is not None:
        labels = labels.masked_fill(~counted, 0.0)

    if input_format == "logits":
        prob = torch.sigmoid(scores)
        log_prob, log_complement = -F.softplus(-scores), -F.softplus(scores)
    else:
        prob = scores
        log_prob, log_complement = scores.log(), torch.log1p(-scores)
    cross_entropy = -(_xlogy(labels, log_prob) + _xlogy(1 - labels, log_complement))
    entropy = -(_xlogy(prob, log_prob) + _xlogy(1 - prob, log_complement))
    brier = (prob - labels).square()
    predicted_positive = prob >= 0.5
    correct = torch.where(predicted_positive, labels, 1 - labels)
    if calibration_mode == "top_label":
        confidence, calibration_correct = torch.where(predicted_positive, prob, 1 - prob), correct
    else:
        confidence, calibration_correct = prob, labels
    if counted is not None:
        # An ignored entry may be NaN, as F.binary_cross_entropy_with_logits' weight 0 allows: NaN * 0 is NaN.
        confidence = torch.where(counted, confidence, 0.0)

    weight = torch.ones_like(prob) if counted is None else counted.to(compute_dtype)

    def total(values: Tensor) -> Tensor:
        return torch.where(weight > 0, values, 0.0).sum(dtype=ACCUMULATE_DTYPE)

    bins = None
    if n_bins is not None:
        cell = bin_index(confidence, n_bins) + n_bins * torch.arange(num_labels, device=preds.device)
        values = torch.stack([weight, confidence * weight, calibration_correct * weight]).to(ACCUMULATE_DTYPE)
        bins = torch.zeros(3, num_labels * n_bins, dtype=ACCUMULATE_DTYPE, device=preds.device)
        bins = bins.index_add_(1, cell.reshape(-1), values.reshape(3, -1))
        bins = bins.view(3, num_labels, n_bins) if multilabel else bins.view(3, n_bins)
    if checks is not None:
        checks.raise_if_failed()
    return BinaryStats(
        count=weight.sum(dtype=ACCUMULATE_DTYPE),
        cross_entropy=total(cross_entropy),
        entropy=total(entropy),
        brier=total(brier),
        correct=total(correct),
        bins=bins,
    )


def _xlogy(weight: Tensor, log_value: Tensor) -> Tensor:
    """weight * log_value with 0 * -inf = 0."""
    return torch.where(weight > 0, weight * log_value, 0.0)


def _check_binary_inputs(
    preds: Tensor, target: Tensor, input_format: str, ignore_index: int | None, multilabel: bool
) -> DeferredChecks:
    """Check the shapes now; queue the check on the values, read back after the pass."""
    if target.shape != preds.shape:
        raise ValueError(
            f"`target` of shape {tuple(target.shape)} must match `preds` of shape {tuple(preds.shape)} "
            "for binary and multilabel inputs."
        )
    if multilabel and preds.ndim < 2:
        raise ValueError(f"multilabel `preds` must be shaped (N, L), got {tuple(preds.shape)}.")
    counted = None if ignore_index is None else target != ignore_index
    bad_preds = preds.isnan() | preds.isposinf()
    if input_format == "probs":
        bad_preds |= (preds < 0) | (preds > 1)
    labels = target.to(torch.float64) if target.is_floating_point() else target
    bad_target = labels.isnan() | (labels < 0) | (labels > 1)
    if counted is not None:
        bad_preds &= counted
        bad_target &= counted
    checks = DeferredChecks()
    checks.add(
        bad_preds.any() | bad_target.any(),
        lambda: _explain_binary_inputs(preds, target, input_format, ignore_index, counted, bad_preds),
    )
    return checks


def _explain_binary_inputs(
    preds: Tensor,
    target: Tensor,
    input_format: str,
    ignore_index: int | None,
    counted: Tensor | None,
    bad_preds: Tensor,
) -> None:
    if bool(bad_preds.any()):
        value = preds[bad_preds][0].item()
        if value != value or value == float("inf"):
            raise ValueError(f"`preds` contains NaN or +inf ({input_format}).")
        seen = preds if counted is None else preds[counted]
        raise ValueError(
            f"`preds` must hold probabilities in [0, 1], found values in "
            f"[{seen.min().item():.6g}, {seen.max().item():.6g}]."
        )
    seen = target if counted is None else target[counted]
    raise ValueError(
        f"`target` must hold labels in [0, 1] (ignore_index={ignore_index}), "
        f"found values in [{seen.min().item()}, {seen.max().item()}]."
    )
