r"""Temperature scan: the NLL-optimal temperature of :math:`\mathrm{softmax}(z / T)` and the cross-entropy it
removes, found in one streaming pass from a few sums per grid temperature.

For a row with scores :math:`z`, :math:`s = z - \max_c z_c`, target :math:`y` (or distribution :math:`q`, with
:math:`t = \sum_c q_c s_c` in place of :math:`s_y`) and inverse temperature :math:`\beta = 1/T`,

.. math::
    f(\beta) = \log \sum_c e^{\beta s_c} - \beta s_y, \qquad
    f^{(k)}(\beta) = \kappa_k\big(s;\ \mathrm{softmax}(\beta s)\big) \ (k \ge 2), \qquad
    f'(\beta) = \mathbb{E}_{\mathrm{softmax}(\beta s)}[s] - s_y,

the derivatives being the cumulants of the scores under the tempered distribution. At each of G grid values
:math:`\beta_g` the state holds :math:`\sum_i f_i^{(k)}(\beta_g)` for :math:`k = 0..4`: a (G, 5) float64 sum
that adds across batches and devices. Each grid point costs one exponentiation of the row, so the scan costs
G softmax passes (7 by default, against 64 for a plain grid of the same accuracy).

The mean NLL is convex in :math:`\beta` (a log-sum-exp minus a linear term), so its exact derivative changes
sign in exactly one grid interval. There, the degree-9 Hermite polynomial that matches the value and four
derivatives at both ends stands in for the NLL; its minimiser is :math:`1/T^*` and its minimum the calibrated
NLL. On netcal's CIFAR-10 and CIFAR-100 LeNet outputs, with their logits scaled by 0.3 to 3, the default grid
(T from 1/4 to 16 in factors of 2) lands within 2.4e-6 of scipy's optimum in T and within 2.4e-7 relative of
its NLL (``docs/calibration.md``).

Temperature scaling (Guo et al. 2017) fits this one :math:`T`; the drop from :math:`T = 1` to :math:`T^*` is
the part of the cross-entropy a single temperature can remove, measured in-sample, so optimistic.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

from xent_plugin.functional._score_chunks import score_chunks
from xent_plugin.functional._validation import check_tensor
from xent_plugin.functional.softmax_stats import ACCUMULATE_DTYPE

DERIVATIVES = 4  # f' .. f'''' besides the value: 5 sums per grid point, a degree-9 Hermite interpolant
_UNDERFLOW = 800.0  # e^{-800} is 0 in float32 and float64, so a score below -800 / beta contributes nothing


def default_temperatures(points: int = 7, low: float = 0.25, high: float = 16.0) -> Tensor:
    """``points`` temperatures evenly spaced in log T from ``low`` to ``high``; the defaults are the powers of 2
    from 1/4 to 16, which hold T = 1 exactly.

    Example:
        >>> default_temperatures().tolist()
        [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0]
    """
    if points < 3 or not 0 < low < high:
        raise ValueError(f"need points >= 3 and 0 < low < high, got points={points}, low={low}, high={high}.")
    exponents = torch.linspace(0, 1, points, dtype=ACCUMULATE_DTYPE)
    grid = low * (high / low) ** exponents
    ones = (grid - 1).abs() < 1e-9
    return torch.where(ones, torch.ones_like(grid), grid)


def check_temperatures(temperatures: Tensor) -> None:
    if not isinstance(temperatures, Tensor) or temperatures.ndim != 1 or temperatures.numel() < 2:
        raise ValueError(f"`temperatures` must be a 1-D tensor of at least 2 values, got {temperatures!r}.")
    # The grid is an argument of a few numbers, kept on the host: read it there, not with a device read per test.
    values = temperatures.detach().cpu().tolist()
    if not all(value > 0 for value in values) or not all(b > a for a, b in zip(values[:-1], values[1:], strict=True)):
        raise ValueError(f"`temperatures` must be positive and increasing, got {values}.")


def temperature_chunk_sums(
    shifted: Tensor, target_score: Tensor, counted: Tensor | None, temperatures: Tensor
) -> tuple[Tensor, Tensor]:
    r"""(G, 5) float64 sums of :math:`f, f', f'', f''', f''''` at each temperature, and the NLL sum at T = 1.

    ``shifted`` is a chunk of scores minus their row maximum (R, C), ``target_score`` the target's shifted score
    (or :math:`\sum_c q_c s_c`) and ``counted`` None or the mask of rows that count: the quantities a per-row
    pass over the logits already holds, so any such pass can feed the scan.

    Example:
        >>> sums, plain = temperature_chunk_sums(torch.tensor([[0.0, -2.0]]), torch.tensor([0.0]), None,
        ...                                      torch.tensor([0.5, 1.0, 2.0]))
        >>> [round(value, 4) for value in sums[:, 0].tolist()], round(plain.item(), 4)
        ([0.0181, 0.1269, 0.3133], 0.1269)
    """
    inverse = temperatures.reciprocal().tolist()
    # Clamping -inf (masked classes) keeps s - mean finite; the clamped scores still exponentiate to exactly 0.
    scores = shifted.clamp_min(-_UNDERFLOW / min(inverse))
    sums = torch.zeros(len(inverse), DERIVATIVES + 1, dtype=ACCUMULATE_DTYPE, device=shifted.device)
    plain = None
    for index, beta in enumerate(inverse):
        tempered = beta * scores
        log_partition = tempered.logsumexp(dim=1)
        probs = (tempered - log_partition[:, None]).exp_()
        mean = (probs * scores).sum(dim=1)
        deviation = scores - mean[:, None]
        weighted = probs.mul_(deviation).mul_(deviation)
        variance = weighted.sum(dim=1)
        weighted.mul_(deviation)
        third = weighted.sum(dim=1)
        fourth = weighted.mul_(deviation).sum(dim=1)
        value = log_partition - beta * target_score
        terms = torch.stack([value, mean - target_score, variance, third, fourth - 3 * variance.square()], dim=1)
        sums[index] = _counted_sum(terms, counted)
        if beta == 1.0:
            plain = sums[index, 0].clone()
    if plain is None:
        plain = _counted_sum(shifted.logsumexp(dim=1) - target_score, counted)
    return sums, plain


def temperature_sums(
    preds: Tensor,
    target: Tensor,
    temperatures: Tensor,
    *,
    input_format: str = "logits",
    class_dim: int = 1,
    ignore_index: int | None = None,
    validate_args: bool = True,
) -> tuple[Tensor, Tensor, Tensor]:
    """Count, the (G, 5) sums of :func:`temperature_chunk_sums` and the NLL sum at T = 1, one chunk at a time.

    Example:
        >>> count, sums, plain = temperature_sums(torch.tensor([[2.0, 0.0]]), torch.tensor([0]),
        ...                                       torch.tensor([0.5, 1.0, 2.0]))
        >>> [round(value, 4) for value in (sums[:, 0] / count).tolist()], round((plain / count).item(), 4)
        ([0.0181, 0.1269, 0.3133], 0.1269)
    """
    check_tensor("preds", preds)
    if validate_args:
        check_temperatures(temperatures)
    temperatures = temperatures.to(ACCUMULATE_DTYPE)
    count = torch.zeros((), dtype=ACCUMULATE_DTYPE, device=preds.device)
    sums = torch.zeros(len(temperatures), DERIVATIVES + 1, dtype=ACCUMULATE_DTYPE, device=preds.device)
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
        chunk_sums, chunk_plain = temperature_chunk_sums(shifted, target_score, counted, temperatures)
        sums += chunk_sums
        plain += chunk_plain
    return count, sums, plain


def _counted_sum(values: Tensor, counted: Tensor | None) -> Tensor:
    # where(), not multiplication: an ignored row may hold inf, and inf * 0 is NaN.
    if counted is not None:
        values = torch.where(counted.view(-1, *([1] * (values.ndim - 1))), values, 0.0)
    return values.sum(dim=0, dtype=ACCUMULATE_DTYPE)


def _temperature_scan_compute(temperatures: Tensor, count: Tensor, sums: Tensor, plain: Tensor) -> dict[str, Tensor]:
    """Best temperature, calibrated NLL, NLL at T = 1 and their difference from the scan's sums."""
    temperatures = temperatures.to(sums)
    missing = torch.tensor(float("nan"), dtype=sums.dtype, device=sums.device)
    if float(count) == 0:
        warnings.warn("temperature_scan: no samples were counted, returning NaN.", UserWarning, stacklevel=3)
        return {"temperature": missing, "calibrated_nll": missing, "nll": missing, "miscalibration": missing}
    plain_mean = plain / count
    # Ascending beta = 1 / T, in which the NLL is convex and its slope increasing.
    inverse, derivatives = temperatures.reciprocal().flip(0), (sums / count).flip(0)
    slope = derivatives[:, 1]
    if not bool(derivatives.isfinite().all()):
        warnings.warn("temperature_scan: the NLL is not finite on the grid, returning NaN.", UserWarning, stacklevel=3)
        temperature, calibrated = missing, missing
    elif bool(slope[0] >= 0) or bool(slope[-1] < 0):
        end = 0 if bool(slope[0] >= 0) else len(slope) - 1
        temperature, calibrated = inverse[end].reciprocal(), derivatives[end, 0]
        warnings.warn(
            f"temperature_scan: the best temperature is at the end of the grid (T={temperature.item():.4g}); "
            "widen `temperatures` to find the minimum.",
            UserWarning,
            stacklevel=3,
        )
    else:
        upper = int((slope >= 0).nonzero()[0])
        beta, calibrated = _hermite_minimum(inverse[upper - 1 : upper + 1], derivatives[upper - 1 : upper + 1])
        temperature = beta.reciprocal()
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
    r"""The NLL-optimal temperature and how much cross-entropy it removes (module docstring).

    Args:
        temperatures: increasing positive temperatures that bracket the optimum; :func:`default_temperatures`
            (1/4 to 16 in factors of 2) when None. Finer grids are more accurate and cost one softmax pass each.
        input_format, class_dim, ignore_index, validate_args: as in
            :func:`~xent_plugin.functional.cross_entropy.cross_entropy`.

    Returns:
        ``temperature`` (the minimiser), ``calibrated_nll`` (the NLL there), ``nll`` (at T = 1, the plain
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
    count, sums, plain = temperature_sums(
        preds,
        target,
        temperatures,
        input_format=input_format,
        class_dim=class_dim,
        ignore_index=ignore_index,
        validate_args=validate_args,
    )
    return _temperature_scan_compute(temperatures, count, sums, plain)


def _hermite_minimum(inverse: Tensor, derivatives: Tensor) -> tuple[Tensor, Tensor]:
    """Minimiser and minimum of the Hermite interpolant on [beta_0, beta_1] whose slope goes from < 0 to >= 0.

    ``derivatives`` is (2, K): the value and K - 1 derivatives at each end.
    """
    terms = derivatives.shape[1]
    degree = 2 * terms - 1
    width = inverse[1] - inverse[0]
    # On u = (beta - beta_0) / width in [0, 1]: the k-th derivative of sum_j a_j u^j at u is
    # sum_{j >= k} j! / (j - k)! a_j u^(j - k), and the data's k-th derivative is scaled by width^k.
    powers = torch.arange(degree + 1, dtype=derivatives.dtype, device=derivatives.device)
    rows, values = [], []
    for end in (0, 1):
        for k in range(terms):
            falling = torch.exp(torch.lgamma(powers + 1) - torch.lgamma((powers - k).clamp_min(0) + 1))
            rows.append(torch.where(powers >= k, falling * float(end) ** (powers - k).clamp_min(0), 0.0))
            values.append(derivatives[end, k] * width**k)
    coefficients = torch.linalg.solve(torch.stack(rows), torch.stack(values)).tolist()
    slope = [j * a for j, a in enumerate(coefficients)][1:]

    def horner(polynomial: list[float], u: float) -> float:
        result = 0.0
        for coefficient in reversed(polynomial):
            result = result * u + coefficient
        return result

    # The interpolant's slope is < 0 at u = 0 and >= 0 at u = 1: bisect to double precision.
    low, high = 0.0, 1.0
    for _ in range(60):
        middle = 0.5 * (low + high)
        if horner(slope, middle) < 0:
            low = middle
        else:
            high = middle
    u = 0.5 * (low + high)
    beta = inverse[0] + u * width
    return beta, derivatives.new_tensor(horner(coefficients, u))
