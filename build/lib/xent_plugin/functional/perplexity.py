r"""Perplexity :math:`\exp(\frac{1}{T}\sum_t -\log q(y_t))`, the exponential of the mean token cross-entropy."""

from __future__ import annotations

from torch import Tensor

from xent_plugin.functional.cross_entropy import _cross_entropy_compute, _cross_entropy_update


def _perplexity_compute(total: Tensor, count: Tensor) -> Tensor:
    return _cross_entropy_compute(total, count).exp()


def perplexity(
    preds: Tensor,
    target: Tensor,
    *,
    input_format: str = "logits",
    class_dim: int = -1,
    ignore_index: int | None = None,
    validate_args: bool = True,
) -> Tensor:
    """Perplexity of token predictions, by default in the layout (B, T, V) with targets (B, T).

    Example:
        >>> import torch
        >>> perplexity(torch.zeros(2, 3, 8), torch.zeros(2, 3, dtype=torch.long))
        tensor(8.0000, dtype=torch.float64)
    """
    stats = _cross_entropy_update(
        preds,
        target,
        input_format=input_format,
        class_dim=class_dim,
        ignore_index=ignore_index,
        validate_args=validate_args,
    )
    return _perplexity_compute(stats.cross_entropy, stats.count)
