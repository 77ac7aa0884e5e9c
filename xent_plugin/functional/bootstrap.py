r"""Streaming Poisson bootstrap: confidence intervals for cross-entropy, accuracy and ECE without storing rows.

The ordinary bootstrap resamples the N rows with replacement, which needs them all at once. The Poisson
bootstrap (Hanley & MacGibbon 2006; Chamandy et al. 2012) gives each row an independent Poisson(1) weight
per replicate instead — the large-N limit of the multinomial counts — so a replicate is a weighted sum that
can be accumulated one batch at a time and added across devices. For B replicates the state is

- per replicate, the weighted count, cross-entropy sum and correct sum (B each), and
- per replicate, the weighted (3, n_bins) reliability histogram (B x 3 x n_bins),

all float64 sums of fixed size. Replicate b's cross-entropy is
:math:`\sum_i w_{ib}\,\ell_i / \sum_i w_{ib}`, its ECE that of its histogram, and the interval at level
:math:`1 - \alpha` is the :math:`\alpha/2` and :math:`1 - \alpha/2` percentiles of the replicate values.

**Weights.** :math:`w_{ib}` is a pure function of (seed, stream, row number, b): a counter-based hash
(32-bit integer mixing) turned into a Poisson(1) draw by inverting its CDF. The stream is the distributed rank,
so ranks never share weights, and the row number counts every row this stream has seen, so cutting the data
into different batches or chunks gives the same weights — streaming equals one-shot exactly.
"""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass, fields

import torch
from torch import Tensor

from xent_plugin.functional import fused as fused_pass
from xent_plugin.functional._validation import check_int, check_n_bins, check_tensor
from xent_plugin.functional.calibration_error import _calibration_error_compute, reliability_table
from xent_plugin.functional.softmax_stats import ACCUMULATE_DTYPE, RowStatistics, bin_index, row_statistics

_MASK32 = (1 << 32) - 1
_MIX = 0x45D9F3B  # 28 bits: a 32-bit value times this fits in int64, so the hash never overflows.
_GOLDEN = 0x9E3779B9
# P(Poisson(1) <= k) for k = 0..15; a 32-bit uniform cannot reach beyond (P(X > 13) < 2^-32).
_POISSON_CDF = [math.exp(-1) * sum(1 / math.factorial(j) for j in range(k + 1)) for k in range(16)]
# The draw is the number of CDF values at or below a uniform u = bits / 2^32, compared in integers.
_POISSON_THRESHOLDS = [math.ceil(p * 2**32) for p in _POISSON_CDF]
_WEIGHT_BLOCK = 1 << 20  # replicate x row weights generated at once (8 MiB of int64)
# Weight blocks at least this large are drawn by a compiled kernel (a one-off compile of ~10 s per process, then
# about 6x faster than the eager sweeps on a 2-core CPU); smaller ones, as in unit tests, stay eager.
# XENT_PLUGIN_FUSED=off turns it off with the compiled softmax pass.
COMPILE_MIN_WEIGHTS = 1 << 19


def _mix32(x: Tensor | int) -> Tensor | int:
    """A 32-bit integer hash (Mueller's 0x45d9f3b mixer) on int64 values in [0, 2^32), or on a Python int."""
    x = ((x >> 16) ^ x) * _MIX & _MASK32
    x = ((x >> 16) ^ x) * _MIX & _MASK32
    return (x >> 16) ^ x


def poisson_weights(rows: Tensor, num_replicates: int, seed: int = 0, stream: int = 0) -> Tensor:
    """(num_replicates, len(rows)) Poisson(1) weights, a pure function of (seed, stream, row number, replicate).

    Example:
        >>> weights = poisson_weights(torch.arange(100_000), num_replicates=4, seed=1)
        >>> [round(w, 2) for w in weights.mean(dim=1).tolist()], round(weights.var().item(), 2)
        ([1.0, 1.0, 1.0, 1.0], 1.0)
        >>> torch.equal(weights[:, 500:600], poisson_weights(torch.arange(500, 600), num_replicates=4, seed=1))
        True
    """
    device = rows.device
    # A Python int, not a tensor on the device: making one there would be a copy from the host, and a wait.
    key = _mix32((seed & _MASK32) ^ _mix32(stream & _MASK32))
    low, high = rows & _MASK32, (rows >> 32) & _MASK32
    row_key = _mix32(_mix32(low ^ key) ^ high)
    replicate = torch.arange(num_replicates, dtype=torch.int64, device=device)
    replicate_key = _mix32((replicate * _GOLDEN + key) & _MASK32)
    if row_key.numel() * num_replicates >= COMPILE_MIN_WEIGHTS and fused_pass.MODE != "off":
        draws = _compiled_draws(row_key, replicate_key)
        if draws is not None:
            return draws
    return _draws(row_key, replicate_key)


def _draws(row_key: Tensor, replicate_key: Tensor) -> Tensor:
    """The (replicates, rows) Poisson(1) draws: how many CDF thresholds each 32-bit hash reaches."""
    bits = _mix32(row_key[None, :] ^ replicate_key[:, None])
    if torch.compiler.is_compiling():
        # Compiled, sixteen comparisons fuse with the hash into one loop over registers (6x the eager sweeps).
        draws = sum((bits >= threshold).to(torch.int64) for threshold in _POISSON_THRESHOLDS)
    else:
        # Eager, one binary search is one sweep where the comparisons would be sixteen.
        draws = torch.searchsorted(_thresholds(bits.device), bits, right=True)
    return draws.to(ACCUMULATE_DTYPE)


@functools.cache
def _thresholds(device: torch.device) -> Tensor:
    # Copied to a device once, not at every block.
    return torch.tensor(_POISSON_THRESHOLDS, dtype=torch.int64, device=device)


_compiled = torch.compile(_draws, dynamic=False, fullgraph=True)
_compile_failed = False


def _compiled_draws(row_key: Tensor, replicate_key: Tensor) -> Tensor | None:
    """:func:`_draws` compiled, the same draws; None (after one warning) where compiling fails in this process."""
    global _compile_failed
    if _compile_failed or torch.compiler.is_compiling():
        return None
    try:
        for key in (row_key, replicate_key):  # one kernel for every block length and number of replicates
            torch._dynamo.maybe_mark_dynamic(key, 0)
        return _compiled(row_key, replicate_key)
    except Exception as error:  # noqa: BLE001 - any failure of the compiler stack means: draw eagerly
        _compile_failed = True
        warnings.warn(
            f"xent_plugin: the compiled bootstrap weights failed ({type(error).__name__}: {error}); "
            "drawing them eagerly for the rest of this process.",
            RuntimeWarning,
            stacklevel=3,
        )
        return None


@dataclass
class BootstrapStats:
    """Float64 sums of one batch: the plain totals and their B weighted replicates.

    ``bins`` is (3, n_bins) and ``replicate_bins`` (B, 3, n_bins); ``rows`` is how many rows (counted or not)
    the batch held, to advance the row counter that keys the weights.
    """

    count: Tensor
    cross_entropy: Tensor
    correct: Tensor
    bins: Tensor
    replicate_count: Tensor
    replicate_cross_entropy: Tensor
    replicate_correct: Tensor
    replicate_bins: Tensor
    rows: int = 0

    @staticmethod
    def shapes(num_replicates: int, n_bins: int) -> dict[str, tuple[int, ...]]:
        """The shape of each sum."""
        scalar, replicates = (), (num_replicates,)
        return {
            "count": scalar,
            "cross_entropy": scalar,
            "correct": scalar,
            "bins": (3, n_bins),
            "replicate_count": replicates,
            "replicate_cross_entropy": replicates,
            "replicate_correct": replicates,
            "replicate_bins": (num_replicates, 3, n_bins),
        }

    @classmethod
    def zeros(cls, num_replicates: int, n_bins: int, device: torch.device | str | None = None) -> BootstrapStats:
        shapes = cls.shapes(num_replicates, n_bins)
        return cls(
            **{name: torch.zeros(shape, dtype=ACCUMULATE_DTYPE, device=device) for name, shape in shapes.items()}
        )

    def add_(self, other: BootstrapStats) -> BootstrapStats:
        for f in fields(self):
            if f.name != "rows":
                getattr(self, f.name).add_(getattr(other, f.name))
        self.rows += other.rows
        return self


def bootstrap_stats(
    preds: Tensor,
    target: Tensor,
    *,
    num_replicates: int = 1000,
    n_bins: int = 15,
    seed: int = 0,
    stream: int = 0,
    first_row: int = 0,
    input_format: str = "logits",
    class_dim: int = 1,
    ignore_index: int | None = None,
    validate_args: bool = True,
) -> BootstrapStats:
    """Reduce one batch to plain and replicate sums; the batch's rows are numbered from ``first_row``.

    Other arguments as in :func:`bootstrap_intervals`.
    """
    check_tensor("preds", preds)
    if validate_args:
        check_n_bins(n_bins)
        check_num_replicates(num_replicates)
        check_int("seed", seed)
    device = preds.device
    total = BootstrapStats.zeros(num_replicates, n_bins, device)
    for chunk in row_statistics(
        preds,
        target,
        input_format=input_format,
        class_dim=class_dim,
        ignore_index=ignore_index,
        validate_args=validate_args,
    ):
        total.add_(
            bootstrap_row_stats(
                chunk,
                num_replicates=num_replicates,
                n_bins=n_bins,
                seed=seed,
                stream=stream,
                first_row=first_row + total.rows,
            )
        )
    return total


def bootstrap_row_stats(
    rows: RowStatistics,
    *,
    num_replicates: int = 1000,
    n_bins: int = 15,
    seed: int = 0,
    stream: int = 0,
    first_row: int = 0,
) -> BootstrapStats:
    """:func:`bootstrap_stats` of per-row statistics already computed (by another pass over the same logits).

    Example:
        >>> from xent_plugin.functional.softmax_stats import row_statistics
        >>> logits, labels = torch.randn(100, 4), torch.randint(0, 4, (100,))
        >>> (rows,) = row_statistics(logits, labels)
        >>> from_rows = bootstrap_row_stats(rows, num_replicates=8)
        >>> torch.equal(from_rows.replicate_bins, bootstrap_stats(logits, labels, num_replicates=8).replicate_bins)
        True
    """
    device = rows.cross_entropy.device
    # Columns: count, cross-entropy, correct, then the reliability histogram's three rows of n_bins.
    width = 3 + 3 * n_bins
    plain = torch.zeros(width, dtype=ACCUMULATE_DTYPE, device=device)
    replicated = torch.zeros(num_replicates, width, dtype=ACCUMULATE_DTYPE, device=device)
    row = first_row
    block = max(1, _WEIGHT_BLOCK // num_replicates)
    for start in range(0, rows.cross_entropy.shape[0], block):
        values = _row_values(rows, slice(start, start + block), n_bins)
        numbers = torch.arange(row, row + values.shape[0], dtype=torch.int64, device=device)
        weights = poisson_weights(numbers, num_replicates, seed, stream)
        plain += values.sum(dim=0)
        replicated += weights @ values
        row += values.shape[0]
    return BootstrapStats(
        count=plain[0],
        cross_entropy=plain[1],
        correct=plain[2],
        bins=plain[3:].view(3, n_bins),
        replicate_count=replicated[:, 0],
        replicate_cross_entropy=replicated[:, 1],
        replicate_correct=replicated[:, 2],
        replicate_bins=replicated[:, 3:].reshape(num_replicates, 3, n_bins),
        rows=row - first_row,
    )


def _row_values(chunk: RowStatistics, rows: slice, n_bins: int) -> Tensor:
    """(R, 3 + 3 n_bins) per-row contributions: counted, cross-entropy, correct, and the one-hot histogram."""
    cross_entropy, confidence, correct = chunk.cross_entropy[rows], chunk.confidence[rows], chunk.correct[rows]
    counted = torch.ones_like(cross_entropy, dtype=torch.bool) if chunk.counted is None else chunk.counted[rows]
    weight = counted.to(ACCUMULATE_DTYPE)
    # where(), not multiplication: an ignored row may hold inf, and inf * 0 is NaN.
    cross_entropy = torch.where(counted, cross_entropy, 0.0).to(ACCUMULATE_DTYPE)
    correct = torch.where(counted, correct, 0.0).to(ACCUMULATE_DTYPE)
    confidence = torch.where(counted, confidence, 0.0).to(ACCUMULATE_DTYPE)
    # A comparison, not F.one_hot, which reads the indices' range back from the device to check it.
    bins = torch.arange(n_bins, device=confidence.device)
    one_hot = (bin_index(confidence, n_bins)[:, None] == bins).to(ACCUMULATE_DTYPE)
    histogram = torch.stack([weight, confidence, correct], dim=1)[:, :, None] * one_hot[:, None, :]
    return torch.cat([torch.stack([weight, cross_entropy, correct], dim=1), histogram.flatten(1)], dim=1)


def _bootstrap_intervals_compute(stats: BootstrapStats, confidence_level: float = 0.95) -> dict[str, Tensor]:
    """Point values and percentile intervals of cross-entropy, accuracy and ECE."""
    replicate_count = stats.replicate_count
    safe = replicate_count.clamp_min(1e-300)
    replicate_values = {
        "cross_entropy": torch.where(replicate_count > 0, stats.replicate_cross_entropy / safe, float("nan")),
        "accuracy": torch.where(replicate_count > 0, stats.replicate_correct / safe, float("nan")),
        "ece": _calibration_error_compute(stats.replicate_bins.movedim(0, 1), "l1"),
    }
    count = stats.count
    points = {
        "cross_entropy": stats.cross_entropy / count if count > 0 else count.new_tensor(float("nan")),
        "accuracy": stats.correct / count if count > 0 else count.new_tensor(float("nan")),
        "ece": _calibration_error_compute(stats.bins, "l1"),
    }
    result = {}
    for name, point in points.items():
        lower, upper = _percentiles(replicate_values[name], confidence_level)
        result[name] = point
        result[f"{name}_lower"] = lower
        result[f"{name}_upper"] = upper
    return result


def bootstrap_reliability_table(stats: BootstrapStats, confidence_level: float = 0.95) -> dict[str, Tensor]:
    """The equal-width reliability table with intervals of each bin's accuracy and confidence.

    Adds ``accuracy_lower`` and ``accuracy_upper`` (the Wilson score interval of the bin's correct count) and
    ``confidence_lower`` and ``confidence_upper`` (the percentile interval of the bin's mean confidence over
    replicates), NaN for empty bins, to :func:`~xent_plugin.functional.calibration_error.reliability_table`.
    The accuracy uses Wilson's interval rather than the bootstrap because a bin with few samples, or with
    accuracy near 1, has too few distinct replicate values for percentiles to cover (a bin whose samples are
    all correct gets [1, 1]); Wilson's interval covers a binomial proportion near the nominal level at every n,
    and conservatively when the bin's samples have different probabilities of being correct.
    """
    table = reliability_table(stats.bins)
    table["accuracy_lower"], table["accuracy_upper"] = wilson_interval(stats.bins[2], stats.bins[0], confidence_level)
    count, confidence_sum, _ = stats.replicate_bins.unbind(1)
    per_replicate = torch.where(count > 0, confidence_sum / count.clamp_min(1e-300), float("nan"))
    table["confidence_lower"], table["confidence_upper"] = _percentiles(per_replicate, confidence_level)
    return table


def wilson_interval(successes: Tensor, trials: Tensor, confidence_level: float = 0.95) -> tuple[Tensor, Tensor]:
    r"""Wilson's score interval for a proportion, NaN where ``trials`` is 0:
    :math:`\frac{\hat p + z^2/2n \pm z\sqrt{\hat p(1 - \hat p)/n + z^2/4n^2}}{1 + z^2/n}`.

    Example:
        >>> lower, upper = wilson_interval(torch.tensor([10.0, 5.0]), torch.tensor([10.0, 10.0]))
        >>> [round(value, 3) for value in lower.tolist()], [round(value, 3) for value in upper.tolist()]
        ([0.722, 0.237], [1.0, 0.763])
    """
    z = math.sqrt(2) * torch.special.erfinv(torch.tensor(confidence_level, dtype=torch.float64)).item()
    n = trials.clamp_min(1e-300)
    share = successes / n
    centre = (share + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z / (1 + z**2 / n) * (share * (1 - share) / n + z**2 / (4 * n**2)).clamp_min(0).sqrt()
    empty = trials <= 0
    lower, upper = (centre - half).clamp(0, 1), (centre + half).clamp(0, 1)  # rounding at 0 and n successes
    return lower.masked_fill(empty, float("nan")), upper.masked_fill(empty, float("nan"))


def bootstrap_intervals(
    preds: Tensor,
    target: Tensor,
    *,
    num_replicates: int = 1000,
    n_bins: int = 15,
    confidence_level: float = 0.95,
    seed: int = 0,
    input_format: str = "logits",
    class_dim: int = 1,
    ignore_index: int | None = None,
    validate_args: bool = True,
) -> dict[str, Tensor]:
    r"""Cross-entropy, accuracy and ECE with Poisson-bootstrap percentile intervals (module docstring).

    Args:
        num_replicates: bootstrap replicates B (default 1000: the smallest B at which the simulation in
            ``docs/calibration.md`` puts the cross-entropy and accuracy coverage within a point of 95 %); the state
            is B x (3 + 3 n_bins) float64 numbers, 375 KiB at the defaults.
        n_bins: equal-width bins of the ECE.
        confidence_level: coverage of the intervals.
        seed: keys the weights, with the row numbers.
        input_format, class_dim, ignore_index, validate_args: as in
            :func:`~xent_plugin.functional.cross_entropy.cross_entropy`.

    Returns:
        ``cross_entropy``, ``accuracy``, ``ece`` and, for each, ``<name>_lower`` and ``<name>_upper``.

    Example:
        >>> generator = torch.Generator().manual_seed(0)
        >>> logits = torch.randn(2000, 5, generator=generator)
        >>> labels = torch.multinomial(logits.softmax(dim=1), 1, generator=generator).squeeze(1)
        >>> result = bootstrap_intervals(logits, labels)
        >>> bool(result["cross_entropy_lower"] < result["cross_entropy"] < result["cross_entropy_upper"])
        True
    """
    check_confidence_level(confidence_level)
    stats = bootstrap_stats(
        preds,
        target,
        num_replicates=num_replicates,
        n_bins=n_bins,
        seed=seed,
        input_format=input_format,
        class_dim=class_dim,
        ignore_index=ignore_index,
        validate_args=validate_args,
    )
    return _bootstrap_intervals_compute(stats, confidence_level)


def check_num_replicates(num_replicates: object) -> None:
    if isinstance(num_replicates, bool) or not isinstance(num_replicates, int) or num_replicates < 2:
        raise ValueError(f"`num_replicates` must be an integer >= 2, got {num_replicates!r}.")


def check_confidence_level(confidence_level: object) -> None:
    if not isinstance(confidence_level, (int, float)) or not 0 < confidence_level < 1:
        raise ValueError(f"`confidence_level` must be a float in (0, 1), got {confidence_level!r}.")


def _percentiles(values: Tensor, confidence_level: float) -> tuple[Tensor, Tensor]:
    """The (1 - level)/2 and (1 + level)/2 percentiles over the first (replicate) dimension, ignoring NaN."""
    alpha = 1 - confidence_level
    levels = torch.tensor([alpha / 2, 1 - alpha / 2], dtype=values.dtype, device=values.device)
    lower, upper = torch.nanquantile(values, levels, dim=0)
    return lower, upper
