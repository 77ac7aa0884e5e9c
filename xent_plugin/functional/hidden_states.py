r"""The whole set from a language model's final hidden states and output head, without ever holding its logits.

A model's logits :math:`z = h W^\top + b` are its largest tensor: 8 x 4096 tokens x a 128k vocabulary is 16 GiB
in bfloat16. This pass computes them a block of tokens by a block of the vocabulary at a time, never holding more
than ``max_logits`` of them, and folds each block into per-token running statistics with an online maximum (as
online softmax does): for a running maximum :math:`m` and a block's maximum :math:`m_b`, with
:math:`m' = \max(m, m_b)` and :math:`\alpha = e^{m - m'}`,

.. math::
    S' = \alpha S + e^{m_b - m'} S_b, \quad
    T' = \alpha (T + S (m - m')) + e^{m_b - m'} (T_b + S_b (m_b - m')), \quad
    Q' = \alpha^2 Q + e^{2 (m_b - m')} Q_b,

where :math:`S = \sum_c e^{z_c - m}`, :math:`T = \sum_c e^{z_c - m} (z_c - m)` and :math:`Q = \sum_c e^{2 (z_c - m)}`.
From the final :math:`m, S, T, Q`, the target's logit and the first argmax come cross-entropy
:math:`\log S - (z_y - m)`, entropy :math:`\log S - T / S`, Brier score :math:`Q / S^2 - 2 e^{z_y - m} / S + 1`,
confidence :math:`1 / S` and correctness, which the logits' pass
(:mod:`~xent_plugin.functional.softmax_stats`) reduces to the same float64 sums.

The same code runs on CUDA; the blocks' matrix products dominate there as here.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from xent_plugin.functional._validation import (
    DeferredChecks,
    check_floating,
    check_int,
    check_label_smoothing,
    check_n_bins,
    defer_class_indices,
    defer_score_rows,
)
from xent_plugin.functional.softmax_stats import RowStatistics, SufficientStats, _sum_rows, compute_dtype

# Logits held at once by default: 2**22 scores, 16 MiB in float32 (the pass adds about three such blocks of
# temporaries: the exponentials, the shifted scores and their product).
MAX_LOGITS = 1 << 22

# Vocabulary columns per block: rows of this many scores stay in cache while they are reduced.
VOCAB_BLOCK = 8192


def hidden_state_stats(
    hidden: Tensor,
    head_weight: Tensor,
    target: Tensor,
    head_bias: Tensor | None = None,
    *,
    ignore_index: int | None = None,
    label_smoothing: float = 0.0,
    n_bins: int | None = None,
    max_logits: int = MAX_LOGITS,
    validate_args: bool = True,
    on_rows: Callable[[RowStatistics], None] | None = None,
) -> SufficientStats:
    """Float64 sums of the whole set for the logits ``hidden @ head_weight.T + head_bias``, never materialised.

    Args:
        hidden: final hidden states, (..., D), as the output head receives them.
        head_weight: the output head's weight, (V, D).
        target: class indices, ``hidden``'s shape without the last dimension.
        head_bias: the head's bias, (V,), or None.
        ignore_index: a target value that marks tokens not to count.
        label_smoothing: as in ``F.cross_entropy``; affects the cross-entropy only.
        n_bins: when given, also the top-label reliability histogram with this many equal-width bins.
        max_logits: the most logits held at once (a block of tokens times a block of the vocabulary).
        validate_args: check shapes, targets and the logits' row maxima (one read-back per call).
        on_rows: called with each block of tokens' per-row statistics, as in
            :func:`~xent_plugin.functional.softmax_stats.sufficient_stats`.

    Example:
        >>> hidden = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
        >>> head = torch.tensor([[2.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
        >>> stats = hidden_state_stats(hidden, head, torch.tensor([0, 2]))
        >>> round((stats.cross_entropy / stats.count).item(), 4)
        0.9076
    """
    if validate_args:
        _check_hidden_inputs(hidden, head_weight, target, head_bias, max_logits)
        check_label_smoothing(label_smoothing)
        if n_bins is not None:
            check_n_bins(n_bins)
    vocab = head_weight.shape[0]
    hidden_rows = hidden.reshape(-1, hidden.shape[-1])
    target_rows = target.reshape(-1).long()
    checks = DeferredChecks() if validate_args else None
    if checks is not None:
        target_rows = defer_class_indices(checks, target_rows, vocab, ignore_index)
    counted = None if ignore_index is None else target_rows != ignore_index
    safe_target = target_rows if counted is None else target_rows.masked_fill(~counted, 0)
    dtype = compute_dtype(hidden, head_weight)
    vocab_block = max(1, min(vocab, VOCAB_BLOCK, max_logits))
    token_block = max(1, max_logits // vocab_block)
    totals = SufficientStats.zeros(n_bins, device=hidden.device)
    row_maxima = []
    with torch.no_grad():
        for start in range(0, hidden_rows.shape[0], token_block):
            rows = slice(start, start + token_block)
            running = _token_block_statistics(
                hidden_rows[rows], head_weight, head_bias, safe_target[rows], vocab_block, dtype
            )
            row_maxima.append(running.row_max)
            block_counted = None if counted is None else counted[rows]
            block_rows = running.finish(label_smoothing, vocab, block_counted)
            totals.add_(_sum_rows(block_rows, n_bins))
            if on_rows is not None:
                on_rows(block_rows)
    if checks is not None:
        row_max = torch.cat(row_maxima) if row_maxima else hidden.new_zeros(0, dtype=dtype)
        defer_score_rows(checks, "logits", row_max, "logits", counted=counted)
        checks.raise_if_failed()
    return totals


class _RunningRows:
    """Per-token running statistics over the vocabulary blocks seen so far (see the module docstring)."""

    def __init__(self, target: Tensor, dtype: torch.dtype) -> None:
        def full(value: float) -> Tensor:
            return torch.full(target.shape, value, dtype=dtype, device=target.device)

        self.target = target
        self.row_max, self.partition, self.weighted, self.square = full(float("-inf")), full(0), full(0), full(0)
        self.score_sum, self.target_score = full(0), full(0)
        self.prediction = torch.zeros_like(target)

    def add_block(self, logits: Tensor, first_class: int) -> None:
        block_max, block_argmax = logits.max(dim=1)  # ties to the first index, as Tensor.max(dim) breaks them
        # A block where every class is masked has maximum -inf: shifting it by 0 instead leaves S_b = 0, not NaN.
        shifted = logits - torch.where(torch.isfinite(block_max), block_max, 0.0)[:, None]
        exp_shifted = shifted.exp()
        block_partition = exp_shifted.sum(dim=1)
        # 0 * -inf is NaN: a masked class (-inf) clamped to the most negative finite value contributes 0.
        block_weighted = (exp_shifted * shifted.clamp_min(torch.finfo(shifted.dtype).min)).sum(dim=1)
        block_square = exp_shifted.square().sum(dim=1)

        new_max = torch.maximum(self.row_max, block_max)
        finite_new_max = torch.where(torch.isfinite(new_max), new_max, 0.0)  # a row all -inf so far stays at S = 0
        old_scale, block_scale = (self.row_max - finite_new_max).exp(), (block_max - finite_new_max).exp()
        # S * (m - m') is 0 where S is: where(), because a first block meets m = -inf there.
        old_gap = torch.where(self.partition > 0, self.partition * (self.row_max - finite_new_max), 0.0)
        block_gap = torch.where(block_partition > 0, block_partition * (block_max - finite_new_max), 0.0)
        self.weighted = old_scale * (self.weighted + old_gap) + block_scale * (block_weighted + block_gap)
        self.partition = old_scale * self.partition + block_scale * block_partition
        self.square = old_scale.square() * self.square + block_scale.square() * block_square
        self.prediction = torch.where(block_max > self.row_max, block_argmax + first_class, self.prediction)
        self.row_max = new_max
        self.score_sum = self.score_sum + logits.sum(dim=1)
        in_block = (self.target >= first_class) & (self.target < first_class + logits.shape[1])
        local = (self.target - first_class).clamp(0, logits.shape[1] - 1)
        self.target_score = torch.where(in_block, logits.gather(1, local[:, None]).squeeze(1), self.target_score)

    def finish(self, label_smoothing: float, vocab: int, counted: Tensor | None) -> RowStatistics:
        log_partition = self.partition.log()
        target_shifted = self.target_score - self.row_max
        cross_entropy = log_partition - target_shifted
        if label_smoothing > 0:
            uniform_cross_entropy = log_partition - (self.score_sum / vocab - self.row_max)
            cross_entropy = (1 - label_smoothing) * cross_entropy + label_smoothing * uniform_cross_entropy
        return RowStatistics(
            counted=counted,
            cross_entropy=cross_entropy,
            entropy=log_partition - self.weighted / self.partition,
            brier=self.square / self.partition.square() - 2 * target_shifted.exp() / self.partition + 1,
            confidence=self.partition.reciprocal(),
            correct=(self.prediction == self.target).to(self.partition.dtype),
            reference_cross_entropy=None,
            reference_entropy=None,
            kl=None,
        )


def _token_block_statistics(
    hidden: Tensor,
    head_weight: Tensor,
    head_bias: Tensor | None,
    target: Tensor,
    vocab_block: int,
    dtype: torch.dtype,
) -> _RunningRows:
    running = _RunningRows(target, dtype)
    for first in range(0, head_weight.shape[0], vocab_block):
        columns = slice(first, first + vocab_block)
        weight = head_weight[columns]
        logits = hidden @ weight.T if head_bias is None else torch.addmm(head_bias[columns], hidden, weight.T)
        running.add_block(logits.to(dtype), first)
    return running


def _check_hidden_inputs(
    hidden: Tensor, head_weight: Tensor, target: Tensor, head_bias: Tensor | None, max_logits: int
) -> None:
    check_floating("hidden", hidden)
    check_floating("head_weight", head_weight)
    check_int("max_logits", max_logits, minimum=1)
    if hidden.ndim < 1 or head_weight.ndim != 2 or head_weight.shape[1] != hidden.shape[-1]:
        raise ValueError(
            f"`head_weight` of shape {tuple(head_weight.shape)} must be (vocabulary, {hidden.shape[-1]}) for "
            f"`hidden` of shape {tuple(hidden.shape)}."
        )
    if head_bias is not None:
        check_floating("head_bias", head_bias)
        if head_bias.shape != head_weight.shape[:1]:
            raise ValueError(
                f"`head_bias` of shape {tuple(head_bias.shape)} must be ({head_weight.shape[0]},) for "
                f"`head_weight` of shape {tuple(head_weight.shape)}."
            )
    if target.shape != hidden.shape[:-1]:
        raise ValueError(
            f"`target` of shape {tuple(target.shape)} must be `hidden`'s shape without its last dimension, "
            f"{tuple(hidden.shape[:-1])}."
        )
    if target.is_floating_point() or target.dtype == torch.bool:
        raise TypeError(f"`target` must hold class indices (an integer tensor), got dtype {target.dtype}.")
