r"""Temperature scan: the cross-entropy of the tempered predictions :math:`\mathrm{softmax}(z / T)` at a grid of
temperatures, accumulated in one pass, and the best temperature it implies.

For a row with scores :math:`z`, :math:`s = z - \max_c z_c` and target :math:`y` (or distribution :math:`p`),

.. math::
    \mathrm{NLL}_T = \log \sum_c e^{s_c / T} - s_y / T
    \quad\Big(\text{soft: } \log \sum_c e^{s_c / T} - \textstyle\sum_c p_c s_c / T\Big),

which is stable for every :math:`T` because :math:`s \le 0`. The state is the count and the NLL sum at each
temperature, a vector of fixed length that adds across batches and devices.

Temperature scaling (Guo et al. 2017) fits one :math:`T` to minimise the NLL; the scan gives that minimum to
within the grid, refined by the vertex of the parabola through the best grid point and its neighbours in
:math:`\beta = 1/T`, in which the NLL is convex. The drop from :math:`T = 1` to the best :math:`T` is the
part of the cross-entropy that a single temperature can remove: the miscalibration a recalibration on this
data would fix. Measured on the data it is fitted to, it is an optimistic (in-sample) estimate.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

from xent_plugin.functional._score_chunks import score_chunks
from xent_plugin.functional.softmax_stats import ACCUMULATE_DTYPE


def default_temperatures(points: int = 64, low: float = 0.25, high: float = 16.0) -> Tensor:
    """``points`` temperatures evenly spaced in log T from ``low`` to ``high``; with the defaults (a step of
    2^(6/63), about 6.8 %) the grid holds T = 1 exactly.

    Example:
        >>> grid = default_temperatures()
        >>> len(grid), grid[0].item(), grid[21].item(), grid[-1].item()
        (64, 0.25, 1.0, 16.0)
    """
    if points < 3 or not 0 < low < high:
        raise ValueError(f"need points >= 3 and 0 < low < high, got points={points}, low={low}, high={high}.")
    exponents = torch.linspace(0, 1, points, dtype=ACCUMULATE_DTYPE)
    grid = low * (high / low) ** exponents
    ones = (grid - 1).abs() < 1e-9
    return torch.where(ones, torch.ones_like(grid), grid)


def check_temperatures(temperatures: Tensor) -> None:
    if not isinstance(temperatures, Tensor) or temperatures.ndim != 1 or temperatures.numel() < 3:
        raise ValueError(f"`temperatures` must be a 1-D tensor of at least 3 values, got {temperatures!r}.")
    if not bool((temperatures > 0).all()) or not bool((temperatures.diff() > 0).all()):
        raise ValueError(f"`temperatures` must be positive and increasing, got {temperatures.tolist()}.")


def temperature_nll(
    preds: Tensor,
    target: Tensor,
    temperatures: Tensor,
    *,
    input_format: str = "logits",
    class_dim: int = 1,
    ignore_index: int | None = None,
    validate_args: bool = True,
) -> tuple[Tensor, Tensor, Tensor]:
    """Count, NLL sum at each temperature (G,) and NLL sum at T = 1, in float64, one chunk of rows at a time.

    Each chunk is tempered one temperature after another, so the memory is that of one chunk whatever G is.

    Example:
        >>> grid = torch.tensor([0.5, 1.0, 2.0])
        >>> count, nll, plain = temperature_nll(torch.tensor([[2.0, 0.0]]), torch.tensor([0]), grid)
        >>> [round(value, 4) for value in (nll / count).tolist()], round((plain / count).item(), 4)
        ([0.0181, 0.1269, 0.3133], 0.1269)
    """
    if validate_args:
        check_temperatures(temperatures)
    inverse = temperatures.reciprocal().tolist()
    count = torch.zeros((), dtype=ACCUMULATE_DTYPE, device=preds.device)
    nll = torch.zeros(len(inverse), dtype=ACCUMULATE_DTYPE, device=preds.device)
    plain = torch.zeros((), dtype=ACCUMULATE_DTYPE, device=preds.device)
    for chunk in score_chunks(
        preds,
        target,
        input_format=input_format,
        class_dim=class_dim,
        ignore_index=ignore_index,
        validate_args=validate_args,
    ):
        shifted = chunk.scores - chunk.scores.amax(dim=1, keepdim=True)
        if chunk.target.ndim == 1:
            target_score = shifted.gather(1, chunk.target[:, None]).squeeze(1)
        else:
            # 0 * -inf is 0 here (a masked class the target does not use); p > 0 on a masked class gives -inf.
            target_score = torch.where(chunk.target > 0, chunk.target * shifted, 0.0).sum(dim=1)
        counted = chunk.counted
        count += shifted.shape[0] if counted is None else counted.sum()
        plain += _counted_sum(shifted.logsumexp(dim=1) - target_score, counted)
        for index, beta in enumerate(inverse):
            nll[index] += _counted_sum((shifted * beta).logsumexp(dim=1) - target_score * beta, counted)
    return count, nll, plain


def _counted_sum(values: Tensor, counted: Tensor | None) -> Tensor:
    # where(), not multiplication: an ignored row may hold inf, and inf * 0 is NaN.
    if counted is not None:
        values = torch.where(counted, values, 0.0)
    return values.sum(dtype=ACCUMULATE_DTYPE)


def _temperature_scan_compute(temperatures: Tensor, count: Tensor, nll: Tensor, plain: Tensor) -> dict[str, Tensor]:
    """Best temperature, calibrated NLL, NLL at T = 1 and their difference from the scan's sums."""
    temperatures = temperatures.to(nll)
    if float(count) == 0:
        warnings.warn("temperature_scan: no samples were counted, returning NaN.", UserWarning, stacklevel=3)
        missing = torch.tensor(float("nan"), dtype=nll.dtype, device=nll.device)
        return {"temperature": missing, "calibrated_nll": missing, "nll": missing, "miscalibration": missing}
    mean = nll / count
    best = int(mean.argmin())
    temperature, calibrated = temperatures[best], mean[best]
    if best in (0, len(mean) - 1):
        warnings.warn(
            f"temperature_scan: the best temperature is at the end of the grid (T={temperature.item():.4g}); "
            "widen `temperatures` to find the minimum.",
            UserWarning,
            stacklevel=3,
        )
    else:
        # NLL is convex in the inverse temperature (a log-sum-exp of beta * s minus a linear term), and a parabola
        # in beta fits it better than one in T or log T (0.05 % in T, 4e-6 relative in NLL, on 64 points).
        inverse, values = temperatures[best - 1 : best + 2].reciprocal().flip(0), mean[best - 1 : best + 2].flip(0)
        vertex, calibrated = _parabola_vertex(inverse, values)
        temperature = vertex.reciprocal()
    plain_mean = plain / count
    return {
        "temperature": temperature,
        "calibrated_nll": calibrated,
        "nll": plain_mean,
        "miscalibration": plain_mean - calibrated,
    }


def temperature_scan(
    preds: Tensor,
    target: Tensor,
    temperatures: Tensor | None = None,
    *,
    input_format: str = "logits",
    class_dim: int = 1,
    ignore_index: int | None = None,
    validate_args: bool = True,
) -> dict[str, Tensor]:
    r"""The NLL-optimal temperature and how much cross-entropy it removes.

    Args:
        temperatures: increasing positive temperatures; :func:`default_temperatures` (64 points from 1/4 to 16)
            when None.
        input_format, class_dim, ignore_index, validate_args: as in
            :func:`~xent_plugin.functional.cross_entropy.cross_entropy`.

    Returns:
        ``temperature`` (the refined minimiser), ``calibrated_nll`` (the NLL there), ``nll`` (at T = 1, the plain
        cross-entropy) and ``miscalibration`` = ``nll`` - ``calibrated_nll``, in nats.

    Example:
        >>> generator = torch.Generator().manual_seed(0)
        >>> logits = torch.randn(4000, 10, generator=generator)
        >>> labels = torch.multinomial(logits.softmax(dim=1), 1, generator=generator).squeeze(1)
        >>> result = temperature_scan(3 * logits, labels)  # three times too confident
        >>> round(result["temperature"].item(), 1)
        3.0
    """
    temperatures = default_temperatures() if temperatures is None else temperatures
    count, nll, plain = temperature_nll(
        preds,
        target,
        temperatures,
        input_format=input_format,
        class_dim=class_dim,
        ignore_index=ignore_index,
        validate_args=validate_args,
    )
    return _temperature_scan_compute(temperatures, count, nll, plain)


def _parabola_vertex(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Vertex (x, y) of the parabola through three points, x kept within [x0, x2]."""
    (x0, x1, x2), (y0, y1, y2) = x.unbind(), y.unbind()
    slope_left, slope_right = (y1 - y0) / (x1 - x0), (y2 - y1) / (x2 - x1)
    curvature = (slope_right - slope_left) / (x2 - x0)
    if float(curvature) <= 0:
        return x1, y1
    vertex = (0.5 * (x0 + x1) - slope_left / (2 * curvature)).clamp(x0, x2)
    value = y1 + slope_left * (vertex - x1) + curvature * (vertex - x0) * (vertex - x1)
    return vertex, torch.minimum(value, y1)
