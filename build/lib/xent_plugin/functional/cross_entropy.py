r"""Multiclass cross-entropy (log loss): :math:`H(p, q) = -\sum_c p_c \log q_c`, averaged over rows, in nats."""

from __future__ import annotations

from torch import Tensor

from xent_plugin.functional._reduction import mean_or_nan
from xent_plugin.functional.softmax_stats import SufficientStats, sufficient_stats


def _cross_entropy_update(
    preds: Tensor,
    target: Tensor,
    *,
    input_format: str = "logits",
    class_dim: int = 1,
    ignore_index: int | None = None,
    label_smoothing: float = 0.0,
    validate_args: bool = True,
) -> SufficientStats:
    return sufficient_stats(
        preds,
        target,
        input_format=input_format,
        class_dim=class_dim,
        ignore_index=ignore_index,
        label_smoothing=label_smoothing,
        validate_args=validate_args,
    )


def _cross_entropy_compute(total: Tensor, count: Tensor) -> Tensor:
    return mean_or_nan(total, count, "cross_entropy")


def cross_entropy(
    preds: Tensor,
    target: Tensor,
    *,
    input_format: str = "logits",
    class_dim: int = 1,
    ignore_index: int | None = None,
    label_smoothing: float = 0.0,
    validate_args: bool = True,
) -> Tensor:
    """Mean cross-entropy in nats, as ``F.cross_entropy`` but from logits, probabilities or log-probabilities.

    Args:
        preds: (N, C), (N, C, ...) or, with ``class_dim=-1``, (..., C).
        target: class indices, or a distribution shaped like ``preds`` (soft labels).
        input_format: ``"logits"``, ``"probs"`` or ``"log_probs"``.
        class_dim: 1 as in ``F.cross_entropy``, or -1 for the token layout (B, T, V).
        ignore_index: target value of positions not to count.
        label_smoothing: mixes the target with the uniform distribution, as in ``F.cross_entropy``.
        validate_args: check the inputs; turn off on hot paths.

    Example:
        >>> import torch
        >>> cross_entropy(torch.tensor([[2.0, 0.0], [0.0, 2.0]]), torch.tensor([0, 0]))
        tensor(1.1269, dtype=torch.float64)
    """
    stats = _cross_entropy_update(
        preds,
        target,
        input_format=input_format,
        class_dim=class_dim,
        ignore_index=ignore_index,
        label_smoothing=label_smoothing,
        validate_args=validate_args,
    )
    return _cross_entropy_compute(stats.cross_entropy, stats.count)
