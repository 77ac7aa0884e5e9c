r"""Adaptive (equal-mass) calibration error, approximated from the fine confidence histogram.

Equal-mass binning sorts the :math:`N` samples by confidence and cuts them into :math:`M` groups of (nearly)
equal size, with the sizes of ``np.array_split``: the first :math:`N \bmod M` groups hold
:math:`\lceil N/M \rceil` samples and the rest :math:`\lfloor N/M \rfloor`. Bin :math:`m` therefore holds the
samples of sorted rank :math:`[b_m, b_{m+1})` with :math:`b_m = m \lfloor N/M \rfloor + \min(m, N \bmod M)`.
The calibration error is then that of :mod:`~xent_plugin.functional.calibration_error` on these bins; with
:math:`r_i = a_i - c_i` (correctness minus confidence) and :math:`S_m = \sum_{i \in B_m} r_i`,
:math:`\mathrm{ECE} = \frac{1}{N} \sum_m |S_m|`.

**The approximation.** The fine histogram keeps, per cell :math:`k` of width :math:`1/K`, the count
:math:`n_k`, the confidence sum :math:`C_k` and the correctness sum :math:`A_k`. Sorting respects cells, so a
cell that no boundary :math:`b_m` cuts lies wholly in one bin, exactly as in the exact binning. A cell that a
boundary cuts is split in proportion to the ranks on either side, as if its samples were interchangeable.

**The bound.** Only samples of cut cells can change bins, and each sample's bin weights move by at most 2 in
total (both are distributions over bins), so
:math:`|\mathrm{ECE}_\text{approx} - \mathrm{ECE}_\text{exact}| \le \frac{1}{N}\sum_m |\Delta S_m| \le
\frac{2}{N} \sum_{k \text{ cut}} \sum_{i \in k} |r_i|`. Since
:math:`|a - c| \le a(1 - c) + (1 - a)c` for :math:`a, c \in [0, 1]`, a cell's residual mass is at most
:math:`u_k = A_k + C_k - 2\max(\ell_k A_k,\; C_k - h_k (n_k - A_k))` with :math:`[\ell_k, h_k)` its
confidence range — computable from the histogram, and at most :math:`n_k`. So the error is at most twice the
residual mass of the at most :math:`M - 1` cut cells, itself at most twice their share of the samples.
For the root-mean-square error (``norm="l2"``), :math:`|g'^2 - g^2| \le 2|g' - g|` for gaps in [-1, 1], so
:math:`|\mathrm{RMSCE}' - \mathrm{RMSCE}| \le \sqrt{2\,\delta_{l1}}`; for the maximum (``"max"``) each bin's
gap moves by at most :math:`\sum_{k \text{ cut}} u_k / n_m`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from xent_plugin.functional._validation import NORMS, check_choice, check_n_bins
from xent_plugin.functional.calibration_error import (
    AVERAGES,
    _calibration_error_average,
    _calibration_error_compute,
    reliability_table,
)
from xent_plugin.functional.confidence_histogram import FINE_CELLS, cell_edges, confidence_histogram


def equal_mass_bins(histogram: Tensor, n_bins: int) -> Tensor:
    """Coarsen a (3, ..., n_cells) fine histogram into (3, ..., n_bins) equal-mass bins (see the module docstring).

    Example:
        >>> from xent_plugin.functional.softmax_stats import reliability_bins
        >>> confidence = torch.tensor([0.55, 0.6, 0.65, 0.9])
        >>> histogram = reliability_bins(confidence, torch.tensor([1.0, 0.0, 1.0, 1.0]), n_bins=4)
        >>> equal_mass_bins(histogram, n_bins=2)[0]  # the cell [0.5, 0.75) is cut after its first two samples
        tensor([2., 2.], dtype=torch.float64)
    """
    return torch.einsum("c...k,...mk->c...m", histogram, _cell_fractions(histogram[0], n_bins))


def equal_mass_error_bound(histogram: Tensor, n_bins: int, norm: str = "l1") -> Tensor:
    """Upper bound on |approximate - exact| equal-mass calibration error, per histogram (module docstring).

    Example:
        >>> from xent_plugin.functional.softmax_stats import reliability_bins
        >>> histogram = reliability_bins(torch.rand(1000), torch.ones(1000), n_bins=4096)
        >>> bool(equal_mass_error_bound(histogram, n_bins=15) < 0.01)
        True
    """
    check_choice("norm", norm, NORMS)
    count, confidence_sum, correct_sum = histogram.unbind(0)
    edges = cell_edges(count.shape[-1], count)
    low, high = edges[:-1], edges[1:]
    # sum_i a_i c_i is at least low * A and at least C - high * (n - A); |a - c| <= a + c - 2ac.
    least_product = torch.maximum(low * correct_sum, confidence_sum - high * (count - correct_sum))
    residual_mass = (correct_sum + confidence_sum - 2 * least_product).clamp_min(0)
    cut_mass = torch.where(_cut_cells(count, n_bins), residual_mass, 0.0).sum(dim=-1)
    total = count.sum(dim=-1)
    l1 = 2 * cut_mass / total.clamp_min(1)
    if norm == "l1":
        bound = l1
    elif norm == "l2":
        bound = (2 * l1).sqrt()
    else:
        bin_counts = equal_mass_bins(histogram, n_bins)[0]
        bound = cut_mass / torch.where(bin_counts > 0, bin_counts, float("inf")).amin(dim=-1)
    return torch.where(total > 0, bound, float("nan"))


def equal_mass_reliability_table(histogram: Tensor, n_bins: int) -> dict[str, Tensor]:
    """Per equal-mass bin: ``lower`` and ``upper`` confidence edge, ``count``, mean ``confidence``, ``accuracy``.

    The edges are where the bin's first and last rank fall, interpolated linearly inside their fine cell, so
    they are exact to within one cell width (1 / n_cells).
    """
    table = reliability_table(equal_mass_bins(histogram, n_bins))
    count = histogram[0]
    cumulative = _cumulative(count)
    targets = _rank_boundaries(count.sum(dim=-1), n_bins)
    table["lower"] = _rank_to_confidence(count, cumulative, targets[..., :-1], right=True)
    table["upper"] = _rank_to_confidence(count, cumulative, targets[..., 1:], right=False)
    return table


def _adaptive_calibration_error_compute(histogram: Tensor, n_bins: int, norm: str = "l1") -> Tensor:
    return _calibration_error_compute(equal_mass_bins(histogram, n_bins), norm)


def adaptive_calibration_error(
    preds: Tensor,
    target: Tensor,
    *,
    task: str = "multiclass",
    n_bins: int = 15,
    norm: str = "l1",
    n_cells: int = FINE_CELLS,
    input_format: str = "logits",
    class_dim: int = 1,
    ignore_index: int | None = None,
    calibration_mode: str = "top_label",
    average: str = "macro",
    validate_args: bool = True,
) -> Tensor:
    r"""Top-label calibration error with ``n_bins`` equal-mass bins, from a fine histogram of ``n_cells`` cells.

    The value is within :func:`equal_mass_error_bound` of the exact equal-mass estimator on the same samples.
    Other arguments as in :func:`~xent_plugin.functional.calibration_error.calibration_error`.

    Example:
        >>> preds = torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.7, 0.3]])
        >>> adaptive_calibration_error(preds, torch.tensor([0, 1, 1, 0]), input_format="probs", n_bins=2)
        tensor(0.1500, dtype=torch.float64)
    """
    if validate_args:
        check_n_bins(n_bins)
        check_choice("norm", norm, NORMS)
        check_choice("average", average, AVERAGES)
    histogram = confidence_histogram(
        preds,
        target,
        task=task,
        n_cells=n_cells,
        input_format=input_format,
        class_dim=class_dim,
        ignore_index=ignore_index,
        calibration_mode=calibration_mode,
        validate_args=validate_args,
    )
    return _calibration_error_average(_adaptive_calibration_error_compute(histogram, n_bins, norm), average)


def _cumulative(count: Tensor) -> Tensor:
    """(..., n_cells + 1) number of samples below each cell edge."""
    return torch.nn.functional.pad(count.cumsum(dim=-1), (1, 0))


def _rank_boundaries(total: Tensor, n_bins: int) -> Tensor:
    """(..., n_bins + 1) ranks b_m at which the equal-mass bins start, with np.array_split's sizes."""
    m = torch.arange(n_bins + 1, dtype=total.dtype, device=total.device)
    rows = total.round()[..., None]
    base = torch.div(rows, n_bins, rounding_mode="floor")
    integral = base * m + torch.minimum(m, rows - base * n_bins)
    # Sums of weights need not be whole numbers; equal fractions are the natural continuation.
    fractional = total[..., None] * m / n_bins
    return torch.where((rows - total[..., None]).abs() < 1e-6, integral, fractional)


def _cell_fractions(count: Tensor, n_bins: int) -> Tensor:
    """(..., n_bins, n_cells): the share of each cell's samples that falls into each equal-mass bin."""
    cumulative = _cumulative(count)
    targets = _rank_boundaries(count.sum(dim=-1), n_bins)
    below, above = cumulative[..., None, :-1], cumulative[..., None, 1:]
    start, stop = targets[..., :-1, None], targets[..., 1:, None]
    overlap = (torch.minimum(above, stop) - torch.maximum(below, start)).clamp_min(0)
    return torch.where(count[..., None, :] > 0, overlap / count[..., None, :].clamp_min(1e-300), 0.0)


def _cut_cells(count: Tensor, n_bins: int) -> Tensor:
    """(..., n_cells) whether an inner bin boundary falls strictly inside the cell."""
    cumulative = _cumulative(count)
    inner = _rank_boundaries(count.sum(dim=-1), n_bins)[..., 1:-1, None]
    return ((cumulative[..., None, :-1] < inner) & (inner < cumulative[..., None, 1:])).any(dim=-2)


def _rank_to_confidence(count: Tensor, cumulative: Tensor, ranks: Tensor, right: bool) -> Tensor:
    """The confidence at which the sorted samples reach ``ranks``, interpolated inside the fine cell."""
    n_cells = count.shape[-1]
    cell = torch.searchsorted(cumulative[..., 1:].contiguous(), ranks.contiguous(), right=right)
    cell = cell.clamp(max=n_cells - 1)
    inside = (ranks - cumulative.gather(-1, cell)) / count.gather(-1, cell).clamp_min(1e-300)
    return (cell + inside.clamp(0, 1)) / n_cells
