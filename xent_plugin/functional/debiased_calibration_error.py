r"""Debiased l2 calibration error (Kumar, Liang & Ma 2019, "Verified Uncertainty Calibration").

The plug-in squared gap :math:`(\bar a_b - \bar c_b)^2` of a bin overestimates the true squared gap by the
variance of the bin's accuracy, :math:`\bar a_b (1 - \bar a_b) / (n_b - 1)` for 0/1 correctness (the unbiased
estimate). Subtracting it per bin gives their debiased estimator of the squared l2 calibration error:

.. math::
    \widehat{\mathrm{CE}}^2 = \sum_{b: n_b \ge 2} \frac{n_b}{N}
        \Big[(\bar a_b - \bar c_b)^2 - \frac{\bar a_b (1 - \bar a_b)}{n_b - 1}\Big],
    \qquad \widehat{\mathrm{CE}} = \sqrt{\max(\widehat{\mathrm{CE}}^2, 0)}.

Bins with fewer than two samples contribute nothing, as in the reference implementation
(``calibration.utils.unbiased_square_ce`` of the uncertainty-calibration package). With soft correctness
the Bernoulli variance :math:`\bar a(1 - \bar a)` is an upper bound on the true one, so the correction is then
conservative. The bins are either the ``n_bins`` equal-width bins or ``n_bins`` equal-mass bins coarsened
from the fine histogram (:mod:`~xent_plugin.functional.adaptive_calibration_error`).
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

from xent_plugin.functional._validation import check_choice, check_n_bins
from xent_plugin.functional.adaptive_calibration_error import equal_mass_bins
from xent_plugin.functional.calibration_error import AVERAGES, _calibration_error_average
from xent_plugin.functional.confidence_histogram import FINE_CELLS
from xent_plugin.functional.task_stats import task_stats

BINNINGS = ("equal_mass", "equal_width")


def debiased_squared_error(bins: Tensor) -> Tensor:
    r"""The unbiased estimate :math:`\widehat{\mathrm{CE}}^2` of the squared l2 error from (3, ..., n_bins) sums.

    It may be negative when the model is close to calibrated; NaN where nothing was counted.

    Example:
        >>> bins = torch.tensor([[10.0, 10.0], [3.0, 8.0], [5.0, 9.0]], dtype=torch.float64)
        >>> debiased_squared_error(bins)
        tensor(0.0061, dtype=torch.float64)
    """
    count, confidence_sum, correct_sum = bins.unbind(0)
    total = count.sum(dim=-1)
    enough = count >= 2
    safe_count = torch.where(enough, count, 2.0)
    accuracy = correct_sum / safe_count
    gap = accuracy - confidence_sum / safe_count
    variance = accuracy * (1 - accuracy) / (safe_count - 1)
    per_bin = torch.where(enough, count * (gap.square() - variance), 0.0)
    return torch.where(total > 0, per_bin.sum(dim=-1) / total.clamp_min(1), float("nan"))


def _debiased_calibration_error_compute(bins: Tensor) -> Tensor:
    squared = debiased_squared_error(bins)
    if bool(squared.isnan().all()):
        warnings.warn("debiased_calibration_error: no samples were counted, returning NaN.", UserWarning, stacklevel=3)
    return squared.clamp_min(0).sqrt()


def debiased_calibration_error(
    preds: Tensor,
    target: Tensor,
    *,
    task: str = "multiclass",
    n_bins: int = 15,
    binning: str = "equal_mass",
    n_cells: int = FINE_CELLS,
    input_format: str = "logits",
    class_dim: int = 1,
    ignore_index: int | None = None,
    calibration_mode: str = "top_label",
    average: str = "macro",
    validate_args: bool = True,
) -> Tensor:
    r"""Debiased top-label l2 calibration error with ``n_bins`` bins (module docstring).

    Args:
        binning: ``"equal_mass"`` (bins coarsened from a fine histogram of ``n_cells`` cells, the default of the
            reference package) or ``"equal_width"`` (exact from an ``n_bins`` histogram).
        n_cells: cells of the fine histogram, for ``"equal_mass"``.

    Other arguments as in :func:`~xent_plugin.functional.calibration_error.calibration_error`.

    Example:
        >>> generator = torch.Generator().manual_seed(0)
        >>> logits = 3 * torch.randn(2000, 5, generator=generator)
        >>> labels = torch.multinomial(logits.softmax(dim=1), 1, generator=generator).squeeze(1)  # calibrated
        >>> debiased_calibration_error(logits, labels) < 0.02
        tensor(True)
    """
    if validate_args:
        check_n_bins(n_bins)
        check_n_bins(n_cells, "n_cells")
        check_choice("binning", binning, BINNINGS)
        check_choice("average", average, AVERAGES)
    stats = task_stats(
        preds,
        target,
        task=task,
        input_format=input_format,
        class_dim=class_dim,
        ignore_index=ignore_index,
        n_bins=n_cells if binning == "equal_mass" else n_bins,
        calibration_mode=calibration_mode,
        validate_args=validate_args,
    )
    bins = equal_mass_bins(stats.bins, n_bins) if binning == "equal_mass" else stats.bins
    return _calibration_error_average(_debiased_calibration_error_compute(bins), average)
