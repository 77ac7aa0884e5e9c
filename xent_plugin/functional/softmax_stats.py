r"""The one pass over the logits that every multiclass metric reduces from.

For a row of scores :math:`z` (logits, log-probabilities, or the log of probabilities) the pass computes,
with :math:`m = \max_c z_c`, :math:`s = z - m`, :math:`S = \sum_c e^{s_c}` and :math:`q = e^{s}/S`:

- cross-entropy against the target, :math:`-\sum_c p_c \log q_c = \log S - \sum_c p_c s_c`;
- predictive entropy :math:`H(q) = \log S - \sum_c e^{s_c} s_c / S`;
- Brier score :math:`\sum_c (q_c - p_c)^2 = \sum_c e^{2 s_c}/S^2 - 2 \sum_c p_c q_c + \sum_c p_c^2`;
- confidence :math:`\max_c q_c = 1/S` and the top-label prediction :math:`\arg\max_c z_c`;
- against a reference distribution :math:`r`: :math:`H(r, q)`, :math:`H(r)` and :math:`\mathrm{KL}(r \| q)`.

Everything is in log space; no softmax is ever logged. A -inf score is a masked class: it gets probability 0
and contributes 0 to every sum (0 log 0 = 0). Rows are reduced to float64 sums chunk by chunk, so the working
set stays in cache and the result has a fixed size whatever the number of rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, fields

import torch
from torch import Tensor

from xent_plugin.functional._layout import is_soft_target, normalize_class_dim, row_chunks
from xent_plugin.functional._validation import (
    INPUT_FORMATS,
    check_choice,
    check_class_indices,
    check_floating,
    check_label_smoothing,
    check_n_bins,
    check_probability_rows,
    check_probability_values,
    check_row_maxima,
)

ACCUMULATE_DTYPE = torch.float64


@dataclass
class SufficientStats:
    """Float64 sums from which every multiclass metric value follows; adding two of them merges batches.

    ``count`` rows were counted (``ignore_index`` rows are not). The ``reference_*`` sums and ``kl`` cover
    the rows that came with a reference distribution. ``bins`` is None or a (3, n_bins) tensor of per-bin
    count, summed confidence and summed correctness, the top-label reliability histogram.
    """

    count: Tensor
    cross_entropy: Tensor
    entropy: Tensor
    brier: Tensor
    correct: Tensor
    reference_count: Tensor
    reference_cross_entropy: Tensor
    reference_entropy: Tensor
    kl: Tensor
    bins: Tensor | None = None

    @classmethod
    def zeros(cls, n_bins: int | None = None, device: torch.device | str | None = None) -> SufficientStats:
        scalars = {f.name: torch.zeros((), dtype=ACCUMULATE_DTYPE, device=device) for f in fields(cls)[:-1]}
        bins = None if n_bins is None else torch.zeros(3, n_bins, dtype=ACCUMULATE_DTYPE, device=device)
        return cls(**scalars, bins=bins)

    def add_(self, other: SufficientStats) -> SufficientStats:
        for f in fields(self):
            mine, theirs = getattr(self, f.name), getattr(other, f.name)
            if mine is not None and theirs is not None:
                mine.add_(theirs)
        return self


def to_scores(preds: Tensor, input_format: str) -> Tensor:
    """Scores whose softmax is the predicted distribution, in at least float32 (float64 stays float64)."""
    compute_dtype = ACCUMULATE_DTYPE if preds.dtype == ACCUMULATE_DTYPE else torch.float32
    scores = preds.to(compute_dtype)
    return scores.log() if input_format == "probs" else scores


def to_probabilities(distribution: Tensor, input_format: str) -> Tensor:
    """The distribution as probabilities, in at least float32."""
    compute_dtype = ACCUMULATE_DTYPE if distribution.dtype == ACCUMULATE_DTYPE else torch.float32
    values = distribution.to(compute_dtype)
    if input_format == "logits":
        return values.softmax(dim=-1)
    if input_format == "log_probs":
        return values.exp()
    return values


def sufficient_stats(
    preds: Tensor,
    target: Tensor,
    reference: Tensor | None = None,
    *,
    input_format: str = "logits",
    class_dim: int = 1,
    ignore_index: int | None = None,
    label_smoothing: float = 0.0,
    n_bins: int | None = None,
    validate_args: bool = True,
) -> SufficientStats:
    """Reduce one batch to float64 sums in one pass over ``preds``.

    Args:
        preds: scores of shape (N, C), (N, C, ...) or (..., C), as logits, probabilities or log-probabilities.
        target: class indices (``preds``' shape without the class dimension) or a distribution shaped like
            ``preds``. It defines cross-entropy, Brier score and correctness.
        reference: an optional distribution shaped like ``preds`` (the true p(y|x)) for H(r, q), H(r) and
            KL(r || q). A soft ``target`` is its own reference when this is None.
        input_format: ``"logits"``, ``"probs"`` or ``"log_probs"``.
        class_dim: the class dimension of ``preds``: 1 as in ``F.cross_entropy``, or -1 for (B, T, V) tokens.
        ignore_index: a target value that marks rows not to count.
        label_smoothing: as in ``F.cross_entropy``; affects the cross-entropy only.
        n_bins: when given, also the top-label reliability histogram with this many equal-width bins.
        validate_args: check shapes, dtypes and values (cost O(rows), not O(rows x classes)).

    Example:
        >>> logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 0.0, float("-inf")]])
        >>> stats = sufficient_stats(logits, torch.tensor([0, 1]))
        >>> round((stats.cross_entropy / stats.count).item(), 4)
        0.4315
    """
    if validate_args and n_bins is not None:
        check_n_bins(n_bins)
    totals = SufficientStats.zeros(n_bins, device=preds.device)
    for rows in row_statistics(
        preds,
        target,
        reference,
        input_format=input_format,
        class_dim=class_dim,
        ignore_index=ignore_index,
        label_smoothing=label_smoothing,
        validate_args=validate_args,
    ):
        totals.add_(_sum_rows(rows, n_bins))
    return totals


def row_statistics(
    preds: Tensor,
    target: Tensor,
    reference: Tensor | None = None,
    *,
    input_format: str = "logits",
    class_dim: int = 1,
    ignore_index: int | None = None,
    label_smoothing: float = 0.0,
    validate_args: bool = True,
) -> Iterator[RowStatistics]:
    """The per-row statistics of :func:`sufficient_stats`, one cache-sized chunk of rows at a time.

    For estimators that weight rows before summing them (a bootstrap, say); arguments as in
    :func:`sufficient_stats`.
    """
    if validate_args:
        check_choice("input_format", input_format, INPUT_FORMATS)
        check_floating("preds", preds)
        check_label_smoothing(label_smoothing)
    class_dim = normalize_class_dim(preds, class_dim)
    num_classes = preds.shape[class_dim]
    soft = is_soft_target(preds, target, class_dim)
    if validate_args and not soft:
        check_class_indices(target, num_classes, ignore_index)
    reference_is_target = reference is None and soft
    if reference is not None and validate_args:
        check_floating("reference", reference)
        if not is_soft_target(preds, reference, class_dim, name="reference"):
            raise ValueError(f"`reference` must be a distribution shaped like `preds` {tuple(preds.shape)}.")
    for scores, (target_rows, reference_rows) in row_chunks(preds, [target, reference], class_dim):
        yield _row_statistics(
            to_scores(scores, input_format),
            target_rows,
            target_rows if reference_is_target else reference_rows,
            input_format=input_format,
            ignore_index=None if soft else ignore_index,
            label_smoothing=label_smoothing,
            validate=validate_args,
            input_dtype=preds.dtype,
        )


@dataclass
class RowStatistics:
    """Per-row statistics of one chunk; ``counted`` is None when every row counts, else a boolean mask."""

    counted: Tensor | None
    cross_entropy: Tensor
    entropy: Tensor
    brier: Tensor
    confidence: Tensor
    correct: Tensor
    reference_cross_entropy: Tensor | None
    reference_entropy: Tensor | None
    kl: Tensor | None


def _row_statistics(
    scores: Tensor,
    target: Tensor,
    reference: Tensor | None,
    *,
    input_format: str,
    ignore_index: int | None,
    label_smoothing: float,
    validate: bool,
    input_dtype: torch.dtype,
) -> RowStatistics:
    row_max, prediction = scores.max(dim=1)
    if validate:
        check_row_maxima("preds", row_max, input_format)
    shifted = scores - row_max[:, None]
    exp_shifted = shifted.exp()
    partition = exp_shifted.sum(dim=1)
    log_partition = partition.log()
    if validate and input_format == "probs":
        check_probability_rows("preds", partition * row_max.exp(), input_dtype)
    # 0 * -inf is NaN: clamping the masked classes to the most negative finite value makes them contribute 0.
    finite_shifted = shifted.clamp_min(torch.finfo(shifted.dtype).min)
    entropy = log_partition - _row_dot(exp_shifted, finite_shifted) / partition
    sum_sq_prob = _row_dot(exp_shifted, exp_shifted) / partition.square()

    if target.ndim == 1:
        counted = None if ignore_index is None else target != ignore_index
        safe_target = target if counted is None else target.masked_fill(~counted, 0)
        target_shifted = shifted.gather(1, safe_target[:, None]).squeeze(1)
        cross_entropy = log_partition - target_shifted
        brier = sum_sq_prob - 2 * target_shifted.exp() / partition + 1
        correct = (prediction == safe_target).to(scores.dtype)
    else:
        counted = None
        target_probs = _checked_probabilities(target, "target", validate)
        cross_entropy = log_partition - _masked_dot(target_probs, shifted)
        brier = sum_sq_prob - 2 * _row_dot(target_probs, exp_shifted) / partition + _row_dot(target_probs, target_probs)
        correct = target_probs.gather(1, prediction[:, None]).squeeze(1)
    if label_smoothing > 0:
        uniform_cross_entropy = log_partition - shifted.mean(dim=1)
        cross_entropy = (1 - label_smoothing) * cross_entropy + label_smoothing * uniform_cross_entropy

    reference_cross_entropy = reference_entropy = kl = None
    if reference is not None:
        reference_probs = (
            target_probs if reference is target else _checked_probabilities(reference, "reference", validate)
        )  # a soft target that is its own reference is checked once
        log_q = shifted - log_partition[:, None]
        positive = reference_probs > 0
        log_reference = torch.where(positive, reference_probs.log(), 0.0)
        reference_cross_entropy = -torch.where(positive, reference_probs * log_q, 0.0).sum(dim=1)
        reference_entropy = -(reference_probs * log_reference).sum(dim=1)
        # Summing p (log p - log q) term by term, not subtracting H(p) from H(p, q), keeps KL(p || p) exactly 0;
        # the clamp only removes rounding below the bound KL >= 0.
        kl = torch.where(positive, reference_probs * (log_reference - log_q), 0.0).sum(dim=1).clamp_min(0)

    return RowStatistics(
        counted=counted,
        cross_entropy=cross_entropy,
        entropy=entropy,
        brier=brier,
        confidence=partition.reciprocal(),
        correct=correct,
        reference_cross_entropy=reference_cross_entropy,
        reference_entropy=reference_entropy,
        kl=kl,
    )


def _checked_probabilities(distribution: Tensor, name: str, validate: bool) -> Tensor:
    probs = to_probabilities(distribution, "probs")
    if validate:
        check_probability_values(name, probs)
        check_probability_rows(name, probs.sum(dim=1), distribution.dtype)
    return probs


def _row_dot(a: Tensor, b: Tensor) -> Tensor:
    """Row-wise dot product without materialising a * b."""
    return torch.bmm(a[:, None, :], b[:, :, None]).view(-1)


def _masked_dot(probs: Tensor, shifted: Tensor) -> Tensor:
    """sum_c p_c s_c with 0 * -inf = 0, and +inf where p_c > 0 meets a masked class."""
    return torch.where(probs > 0, probs * shifted, 0.0).sum(dim=1)


def _sum_rows(rows: RowStatistics, n_bins: int | None) -> SufficientStats:
    weight = None if rows.counted is None else rows.counted.to(rows.cross_entropy.dtype)

    def total(values: Tensor | None) -> Tensor:
        if values is None:
            return torch.zeros((), dtype=ACCUMULATE_DTYPE, device=rows.cross_entropy.device)
        if weight is not None:
            # where(), not multiplication: an ignored row may hold inf, and inf * 0 is NaN.
            values = torch.where(rows.counted, values, 0.0)
        return values.sum(dtype=ACCUMULATE_DTYPE)

    count = (
        torch.tensor(float(rows.cross_entropy.numel()), dtype=ACCUMULATE_DTYPE, device=rows.cross_entropy.device)
        if weight is None
        else weight.sum(dtype=ACCUMULATE_DTYPE)
    )
    has_reference = rows.kl is not None
    bins = None
    if n_bins is not None:
        bins = reliability_bins(rows.confidence, rows.correct, n_bins, weight)
    return SufficientStats(
        count=count,
        cross_entropy=total(rows.cross_entropy),
        entropy=total(rows.entropy),
        brier=total(rows.brier),
        correct=total(rows.correct),
        reference_count=count if has_reference else torch.zeros_like(count),
        reference_cross_entropy=total(rows.reference_cross_entropy),
        reference_entropy=total(rows.reference_entropy),
        kl=total(rows.kl),
        bins=bins,
    )


def bin_index(confidence: Tensor, n_bins: int) -> Tensor:
    """Equal-width bin of each confidence in [0, 1]; bin k is [k/n, (k+1)/n) and the last one includes 1.0."""
    return (confidence * n_bins).long().clamp_(0, n_bins - 1)


def reliability_bins(confidence: Tensor, correct: Tensor, n_bins: int, weight: Tensor | None = None) -> Tensor:
    """(3, n_bins) float64 sums of count, confidence and correctness per equal-width confidence bin.

    Example:
        >>> reliability_bins(torch.tensor([0.1, 0.9, 1.0]), torch.tensor([0.0, 1.0, 1.0]), n_bins=2)
        tensor([[1.0000, 2.0000],
                [0.1000, 1.9000],
                [0.0000, 2.0000]], dtype=torch.float64)
    """
    weight = torch.ones_like(confidence) if weight is None else weight
    values = torch.stack([weight, confidence * weight, correct * weight]).to(ACCUMULATE_DTYPE)
    bins = torch.zeros(3, n_bins, dtype=ACCUMULATE_DTYPE, device=confidence.device)
    return bins.index_add_(1, bin_index(confidence, n_bins), values)
