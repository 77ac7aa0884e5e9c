r"""Predictive entropy :math:`H(q) = -\sum_c q_c \log q_c` of the model's distribution, averaged over rows."""

from __future__ import annotations

import torch
from torch import Tensor

from xent_plugin.functional._layout import normalize_class_dim
from xent_plugin.functional._reduction import mean_or_nan
from xent_plugin.functional.softmax_stats import SufficientStats, sufficient_stats


def _entropy_update(
    preds: Tensor, *, input_format: str = "logits", class_dim: int = 1, validate_args: bool = True
) -> SufficientStats:
    dim = normalize_class_dim(preds, class_dim)
    # The pass needs some target; entropy does not read it, and class 0 is always in range.
    # Made on the device: one made on the host and copied there would be a wait on a GPU.
    placeholder_target = torch.zeros(preds.shape[:dim] + preds.shape[dim + 1 :], dtype=torch.long, device=preds.device)
    return sufficient_stats(
        preds,
        placeholder_target,
        input_format=input_format,
        class_dim=class_dim,
        validate_args=validate_args,
    )


def _entropy_compute(total: Tensor, count: Tensor) -> Tensor:
    return mean_or_nan(total, count, "entropy")


def entropy(preds: Tensor, *, input_format: str = "logits", class_dim: int = 1, validate_args: bool = True) -> Tensor:
    """Mean entropy of the predicted distributions, in nats. Masked (-inf) classes contribute 0.

    Example:
        >>> import torch
        >>> entropy(torch.zeros(4, 8))  # uniform over 8 classes: log 8
        tensor(2.0794, dtype=torch.float64)
    """
    stats = _entropy_update(preds, input_format=input_format, class_dim=class_dim, validate_args=validate_args)
    return _entropy_compute(stats.entropy, stats.count)
