r"""Smooth calibration error, smECE (Błasiok & Nakkiran 2024, "Smooth ECE: Principled Reliability Diagrams via
Kernel Smoothing"), from the fine confidence histogram.

With residuals :math:`\rho_i = c_i - a_i` (confidence minus correctness) and the reflected Gaussian kernel
:math:`K_\sigma(t, f) = \sum_{\ell \in \mathbb{Z}} \varphi_\sigma(t - f + 2\ell) + \varphi_\sigma(t + f + 2\ell)`
on [0, 1] — the density at :math:`t` of :math:`f + \sigma Z` folded back into [0, 1], so
:math:`\int_0^1 K_\sigma(t, f)\,dt = 1` for every :math:`f` —

.. math::
    \mathrm{smECE}_\sigma = \frac{1}{N} \int_0^1 \Big| \sum_i K_\sigma(t, c_i)\, \rho_i \Big| \, dt,

the mean absolute value of the kernel-smoothed residual, weighted by the smoothed density of the confidences.
The bandwidth is the fixed point :math:`\sigma^* = \mathrm{smECE}_{\sigma^*}` of the paper, found as the
authors' relplot does, by bisection on the sign of :math:`\mathrm{smECE}_\sigma - \sigma` (which falls as
:math:`\sigma` grows), here to ``tolerance`` and floored at ``min_bandwidth``; smECE is then
:math:`\mathrm{smECE}_{\sigma^*}`.
The smoothed reliability curve is :math:`\hat y(t) = t - \sum_i K_\sigma(t, c_i)\rho_i / \sum_i K_\sigma(t, c_i)`.

**Discretisation.** Each fine cell's samples sit at the cell's mean confidence (an error of at most one cell
width, 1/4096 by default, in each position). The integral is evaluated on a grid of cell-centred nodes, at
least 8 per :math:`\sigma`: the masses are spread linearly onto the nodes, mirrored about 0 and 1 (which
realises the reflection exactly on the grid), and convolved with the 2-periodic Gaussian by FFT.

relplot (the authors' package) mirrors about its end nodes instead, so a mass at exactly 0 or 1 is smoothed
with half the weight that the reflected kernel gives it; the two agree closely when little mass sits within a
grid step of 0 or 1 (see ``docs/calibration.md`` for the figures).
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import Tensor

from xent_plugin.functional._validation import check_choice
from xent_plugin.functional.calibration_error import AVERAGES, _calibration_error_average
from xent_plugin.functional.confidence_histogram import FINE_CELLS, confidence_histogram

MIN_BANDWIDTH = 1e-3
NODES_PER_BANDWIDTH = 8


def smooth_calibration_error_at(histogram: Tensor, bandwidth: float) -> Tensor:
    r""":math:`\mathrm{smECE}_\sigma` at a fixed bandwidth from a (3, n_cells) fine histogram; NaN if it is empty.

    Example:
        >>> from xent_plugin.functional.softmax_stats import reliability_bins
        >>> histogram = reliability_bins(torch.tensor([0.8, 0.8]), torch.tensor([1.0, 1.0]), n_bins=4096)
        >>> smooth_calibration_error_at(histogram, bandwidth=0.05)  # every residual is -0.2
        tensor(0.2000, dtype=torch.float64)
    """
    positions, counts, residuals = _cell_masses(histogram)
    if counts.numel() == 0:
        return torch.tensor(float("nan"), dtype=histogram.dtype, device=histogram.device)
    n_nodes = _grid_nodes(histogram.shape[-1], bandwidth)
    smoothed_residual, smoothed_count = _smooth_on_grid(positions, torch.stack([residuals, counts]), bandwidth, n_nodes)
    return smoothed_residual.abs().sum() / smoothed_count.sum()


def smooth_calibration_bandwidth(
    histogram: Tensor, min_bandwidth: float = MIN_BANDWIDTH, tolerance: float = 1e-4
) -> float:
    r"""The fixed point :math:`\sigma^* = \mathrm{smECE}_{\sigma^*}`, by bisection on [min_bandwidth, 1].

    Returns the upper end of the final bracket, where :math:`\sigma \ge \mathrm{smECE}_\sigma` (as relplot does),
    or ``min_bandwidth`` when smECE is below it already there.
    """
    low, high = min_bandwidth, 1.0
    if float(smooth_calibration_error_at(histogram, low)) <= low:
        return low
    while high - low > tolerance:
        middle = 0.5 * (low + high)
        if float(smooth_calibration_error_at(histogram, middle)) > middle:
            low = middle
        else:
            high = middle
    return high


def _smooth_calibration_error_compute(
    histogram: Tensor, bandwidth: float | None = None, min_bandwidth: float = MIN_BANDWIDTH
) -> tuple[Tensor, Tensor]:
    """smECE and its bandwidth for a (3, ..., n_cells) histogram, one value per leading index (NaN if empty)."""
    flat = histogram.reshape(3, -1, histogram.shape[-1])
    values, bandwidths = [], []
    for index in range(flat.shape[1]):
        cells = flat[:, index]
        if float(cells[0].sum()) == 0:
            values.append(torch.tensor(float("nan"), dtype=histogram.dtype, device=histogram.device))
            bandwidths.append(float("nan"))
            continue
        sigma = smooth_calibration_bandwidth(cells, min_bandwidth) if bandwidth is None else bandwidth
        values.append(smooth_calibration_error_at(cells, sigma))
        bandwidths.append(sigma)
    if all(math.isnan(sigma) for sigma in bandwidths):
        warnings.warn("smooth_calibration_error: no samples were counted, returning NaN.", UserWarning, stacklevel=3)
    shape = histogram.shape[1:-1]
    return (
        torch.stack(values).reshape(shape),
        torch.tensor(bandwidths, dtype=histogram.dtype, device=histogram.device).reshape(shape),
    )


def smooth_reliability_curve(
    histogram: Tensor,
    bandwidth: float | None = None,
    points: int = 201,
    confidence_level: float = 0.95,
    min_bandwidth: float = MIN_BANDWIDTH,
) -> dict[str, Tensor]:
    r"""The smoothed reliability curve of a (3, n_cells) histogram with a pointwise normal band.

    At each of ``points`` evenly spaced confidences :math:`t` in [0, 1] it evaluates, exactly from the cell
    positions, the kernel weights :math:`w_k = K_\sigma(t, \bar c_k)`, the curve
    :math:`\hat y(t) = t - \sum_k w_k \rho_k / \sum_k w_k n_k`, the effective sample size
    :math:`n_\text{eff} = (\sum_k w_k n_k)^2 / \sum_k w_k^2 n_k` and the band
    :math:`\hat y \pm z \sqrt{\hat y (1 - \hat y) / n_\text{eff}}` with :math:`z` the normal quantile of
    ``confidence_level``: a Wald band for the Nadaraya–Watson estimate that ignores smoothing bias.

    Returns:
        ``confidence`` (the t grid), ``accuracy`` (:math:`\hat y`), ``lower``, ``upper`` (clipped to [0, 1];
        NaN where no data is within reach of the kernel), ``density`` (the smoothed density of confidences,
        integrating to 1), and the scalars ``bandwidth`` and ``smooth_ece``.

    Example:
        >>> from xent_plugin.functional.softmax_stats import reliability_bins
        >>> histogram = reliability_bins(torch.full((100,), 0.7), (torch.arange(100) < 70).double(), n_bins=4096)
        >>> curve = smooth_reliability_curve(histogram, bandwidth=0.05, points=11)
        >>> round(curve["accuracy"][7].item(), 4), bool(curve["lower"][7] < 0.7 < curve["upper"][7])
        (0.7, True)
    """
    if histogram.ndim != 2:
        raise ValueError(f"`histogram` must be one (3, n_cells) histogram, got shape {tuple(histogram.shape)}.")
    if not 0 < confidence_level < 1:
        raise ValueError(f"`confidence_level` must be in (0, 1), got {confidence_level!r}.")
    smooth_ece, sigma = _smooth_calibration_error_compute(histogram, bandwidth, min_bandwidth)
    mesh = torch.linspace(0, 1, points, dtype=histogram.dtype, device=histogram.device)
    positions, counts, residuals = _cell_masses(histogram)
    # Kernel weights are (points x cells); a block of mesh points at a time keeps that matrix small.
    sums = []
    for block in mesh.split(32):
        weights = reflected_gaussian_kernel(block[:, None], positions[None, :], float(sigma))
        sums.append(torch.stack([weights @ counts, weights @ residuals, weights.square() @ counts], dim=1))
    smoothed_count, smoothed_residual, smoothed_square = torch.cat(sums).unbind(1)
    reachable = smoothed_count > 0
    safe_count = torch.where(reachable, smoothed_count, 1.0)
    # Far from the data the smoothed residual extrapolates past [0, 1]; an accuracy cannot leave it.
    accuracy = (mesh - smoothed_residual / safe_count).clamp(0, 1)
    effective_size = safe_count.square() / torch.where(reachable, smoothed_square, 1.0)
    variance = accuracy * (1 - accuracy) / effective_size
    z = torch.special.ndtri(torch.tensor((1 + confidence_level) / 2, dtype=histogram.dtype))
    half_width = z * variance.sqrt()
    missing = torch.tensor(float("nan"), dtype=histogram.dtype, device=histogram.device)
    return {
        "confidence": mesh,
        "accuracy": torch.where(reachable, accuracy, missing),
        "lower": torch.where(reachable, (accuracy - half_width).clamp(0, 1), missing),
        "upper": torch.where(reachable, (accuracy + half_width).clamp(0, 1), missing),
        "density": smoothed_count / counts.sum(),
        "bandwidth": sigma,
        "smooth_ece": smooth_ece,
    }


def smooth_calibration_error(
    preds: Tensor,
    target: Tensor,
    *,
    task: str = "multiclass",
    bandwidth: float | None = None,
    n_cells: int = FINE_CELLS,
    input_format: str = "logits",
    class_dim: int = 1,
    ignore_index: int | None = None,
    calibration_mode: str = "top_label",
    average: str = "macro",
    validate_args: bool = True,
) -> Tensor:
    r"""Top-label smooth calibration error smECE (module docstring).

    Args:
        bandwidth: a fixed kernel width :math:`\sigma`; None (default) uses the fixed point
            :math:`\sigma^* = \mathrm{smECE}_{\sigma^*}`.
        n_cells: cells of the fine confidence histogram.

    Other arguments as in :func:`~xent_plugin.functional.calibration_error.calibration_error`.

    Example:
        >>> preds = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
        >>> smooth_calibration_error(preds, torch.tensor([0, 1, 1, 1]), input_format="probs")
        tensor(0.2500, dtype=torch.float64)
    """
    if validate_args:
        check_choice("average", average, AVERAGES)
        if bandwidth is not None and not 0 < bandwidth:
            raise ValueError(f"`bandwidth` must be a positive float or None, got {bandwidth!r}.")
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
    value, _ = _smooth_calibration_error_compute(histogram, bandwidth)
    return _calibration_error_average(value, average)


def reflected_gaussian_kernel(t: Tensor, f: Tensor, bandwidth: float) -> Tensor:
    r""":math:`K_\sigma(t, f)`, the density at t of f + σZ folded into [0, 1] (broadcasting t against f)."""
    images = torch.arange(-_image_count(bandwidth), _image_count(bandwidth) + 1, dtype=t.dtype, device=t.device)
    shifts = 2 * images
    near = torch.stack([t - f, t + f], dim=-1)[..., None] + shifts
    return _gaussian(near, bandwidth).sum(dim=(-2, -1))


def _cell_masses(histogram: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Mean confidence, count and residual sum (confidence - correctness) of each non-empty cell."""
    count, confidence_sum, correct_sum = histogram.unbind(0)
    occupied = count > 0
    counts = count[occupied]
    return confidence_sum[occupied] / counts, counts, confidence_sum[occupied] - correct_sum[occupied]


def _grid_nodes(n_cells: int, bandwidth: float) -> int:
    needed = math.ceil(NODES_PER_BANDWIDTH / bandwidth)
    return max(n_cells, 1 << max(needed - 1, 1).bit_length())


def _smooth_on_grid(positions: Tensor, masses: Tensor, bandwidth: float, n_nodes: int) -> Tensor:
    """Reflected-kernel smoothing of (channels, cells) masses at ``positions``, on n_nodes cell-centred nodes."""
    # Node j sits at (j + 1/2) / n_nodes; a mass between two nodes is shared linearly between them.
    place = (positions * n_nodes - 0.5).clamp(0, n_nodes - 1)
    left = place.floor().long().clamp(max=max(n_nodes - 2, 0))
    share = (place - left).clamp(0, 1)
    grid = torch.zeros(masses.shape[0], n_nodes, dtype=masses.dtype, device=masses.device)
    grid.index_add_(1, left, masses * (1 - share))
    grid.index_add_(1, (left + 1).clamp(max=n_nodes - 1), masses * share)
    # Mirroring the nodes about 1 gives a 2-periodic sequence whose circular convolution with the 2-periodic
    # Gaussian is the reflected kernel: every image of every mass is counted once.
    period = torch.cat([grid, grid.flip(-1)], dim=-1)
    offsets = torch.arange(2 * n_nodes, dtype=masses.dtype, device=masses.device)
    offsets = torch.where(offsets < n_nodes, offsets, offsets - 2 * n_nodes) / n_nodes
    images = 2 * torch.arange(-_image_count(bandwidth), _image_count(bandwidth) + 1, dtype=masses.dtype)
    kernel = _gaussian(offsets[:, None] + images.to(masses.device), bandwidth).sum(dim=-1) / n_nodes
    smoothed = torch.fft.irfft(torch.fft.rfft(period) * torch.fft.rfft(kernel), n=2 * n_nodes)
    return smoothed[..., :n_nodes]


def _image_count(bandwidth: float) -> int:
    """Periods L either side to sum: for t, f in [0, 1] the images beyond L lie at least 2L away, and beyond 10
    bandwidths the Gaussian is below 1e-22 of its peak. L >= 1 because t + f - 2 reaches 0 at t = f = 1."""
    return max(1, math.ceil(5 * bandwidth))


def _gaussian(distance: Tensor, bandwidth: float) -> Tensor:
    return torch.exp(-0.5 * (distance / bandwidth).square()) / (bandwidth * math.sqrt(2 * math.pi))
