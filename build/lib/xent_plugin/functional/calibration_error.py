r"""Top-label calibration error from a fixed-size reliability histogram.

With equal-width confidence bins :math:`B_1..B_M`, :math:`n_m` samples, mean confidence :math:`\bar c_m` and
accuracy :math:`\bar a_m` in bin m, and :math:`N = \sum_m n_m`:

- ``norm="l1"``, ECE: :math:`\sum_m \frac{n_m}{N} |\bar a_m - \bar c_m|`;
- ``norm="l2"``, RMSCE: :math:`\sqrt{\sum_m \frac{n_m}{N} (\bar a_m - \bar c_m)^2}`;
- ``norm="max"``, MCE: :math:`\max_{m: n_m > 0} |\bar a_m - \bar c_m|`.

The state is the (3, n_bins) float64 table of per-bin count, summed confidence and summed correctness, so it
has the same size at ten samples as at ten million and merges across devices by addition. Bin m is
[m/M, (m+1)/M) and the last bin is closed, so a confidence of exactly 1.0 is counted in it.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

from xent_plugin.functional._validation import NORMS, check_choice, check_n_bins
from xent_plugin.functional.task_stats import task_stats

AVERAGES = ("macro", "none")


def _calibration_error_compute(bins: Tensor, norm: str = "l1") -> Tensor:
    """Calibration error from (3, n_bins) or (3, labels, n_bins) sums; NaN where nothing was counted."""
    count, confidence_sum, correct_sum = bins.unbind(0)
    total = count.sum(dim=-1)
    if not bool((total > 0).any()):
        warnings.warn("calibration_error: no samples were counted, returning NaN.", UserWarning, stacklevel=3)
    gap = (correct_sum - confidence_sum).abs() / count.clamp_min(1)
    weight = count / total.clamp_min(1)[..., None]
    if norm == "l1":
        error = (weight * gap).sum(dim=-1)
    elif norm == "l2":
        error = (weight * gap.square()).sum(dim=-1).sqrt()
    else:
        error = torch.where(count > 0, gap, 0.0).amax(dim=-1)
    return torch.where(total > 0, error, float("nan"))


def reliability_table(bins: Tensor) -> dict[str, Tensor]:
    """Per-bin lower and upper edge, count, mean confidence and accuracy (NaN for empty bins).

    Example:
        >>> from xent_plugin.functional.softmax_stats import reliability_bins
        >>> bins = reliability_bins(torch.tensor([0.2, 0.9]), torch.tensor([0.0, 1.0]), n_bins=2)
        >>> reliability_table(bins)["accuracy"]
        tensor([0., 1.], dtype=torch.float64)
    """
    count, confidence_sum, correct_sum = bins.unbind(0)
    n_bins = count.shape[-1]
    edges = torch.linspace(0, 1, n_bins + 1, dtype=bins.dtype, device=bins.device)
    empty = count == 0
    return {
        "lower": edges[:-1].expand_as(count),
        "upper": edges[1:].expand_as(count),
        "count": count,
        "confidence": (confidence_sum / count).masked_fill(empty, float("nan")),
        "accuracy": (correct_sum / count).masked_fill(empty, float("nan")),
    }


def calibration_error(
    preds: Tensor,
    target: Tensor,
    *,
    task: str = "multiclass",
    n_bins: int = 15,
    norm: str = "l1",
    input_format: str = "logits",
    class_dim: int = 1,
    ignore_index: int | None = None,
    calibration_mode: str = "top_label",
    average: str = "macro",
    validate_args: bool = True,
) -> Tensor:
    """Top-label calibration error (ECE, RMSCE or MCE) with ``n_bins`` equal-width bins.

    Args:
        task: ``"multiclass"``; ``"binary"`` (``calibration_mode`` ``"top_label"`` or ``"positive"``, see
            :mod:`xent_plugin.functional.sigmoid_stats`); or ``"multilabel"``, one histogram per label.
        norm: ``"l1"`` (ECE), ``"l2"`` (RMSCE) or ``"max"`` (MCE).
        average: for multilabel, ``"macro"`` (mean over labels) or ``"none"`` (one value per label).

    Example:
        >>> import torch
        >>> preds = torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8]])
        >>> calibration_error(preds, torch.tensor([0, 1, 1]), input_format="probs", n_bins=5)
        tensor(0.3000, dtype=torch.float64)
    """
    if validate_args:
        check_n_bins(n_bins)
        check_choice("norm", norm, NORMS)
        check_choice("average", average, AVERAGES)
    stats = task_stats(
        preds,
        target,
        task=task,
        input_format=input_format,
        class_dim=class_dim,
        ignore_index=ignore_index,
        n_bins=n_bins,
        calibration_mode=calibration_mode,
        validate_args=validate_args,
    )
    return _calibration_error_average(_calibration_error_compute(stats.bins, norm), average)


def _calibration_error_average(per_label: Tensor, average: str) -> Tensor:
    return per_label if average == "none" else per_label.nanmean()
