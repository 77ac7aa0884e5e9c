r"""Brier score: the squared error of the predicted distribution against the outcome.

Multiclass: :math:`\frac{1}{N}\sum_i \sum_c (q_{ic} - y_{ic})^2`, summed over classes (range [0, 2]), as
Brier (1950) defined it. Binary: :math:`\frac{1}{N}\sum_i (p_i - y_i)^2` (range [0, 1]), as
``sklearn.metrics.brier_score_loss``. A proper scoring rule, like log loss, but bounded, so a single
confidently wrong prediction cannot dominate it.
"""

from __future__ import annotations

from torch import Tensor

from xent_plugin.functional._reduction import mean_or_nan
from xent_plugin.functional.task_stats import task_stats


def _brier_score_compute(total: Tensor, count: Tensor) -> Tensor:
    return mean_or_nan(total, count, "brier_score")


def brier_score(
    preds: Tensor,
    target: Tensor,
    *,
    task: str = "multiclass",
    input_format: str = "logits",
    class_dim: int = 1,
    ignore_index: int | None = None,
    validate_args: bool = True,
) -> Tensor:
    """Mean Brier score; for ``"multilabel"`` the mean over every (sample, label) entry.

    Example:
        >>> import torch
        >>> brier_score(torch.tensor([[0.7, 0.3]]), torch.tensor([0]), input_format="probs")
        tensor(0.1800, dtype=torch.float64)
        >>> brier_score(torch.tensor([0.7]), torch.tensor([1]), task="binary", input_format="probs")
        tensor(0.0900, dtype=torch.float64)
    """
    stats = task_stats(
        preds,
        target,
        task=task,
        input_format=input_format,
        class_dim=class_dim,
        ignore_index=ignore_index,
        validate_args=validate_args,
    )
    return _brier_score_compute(stats.brier, stats.count)
