r"""Binary and multilabel log loss: :math:`-\frac{1}{N}\sum_i y_i \log p_i + (1 - y_i)\log(1 - p_i)`."""

from __future__ import annotations

from torch import Tensor

from xent_plugin.functional._reduction import mean_or_nan
from xent_plugin.functional.sigmoid_stats import binary_stats


def binary_cross_entropy(
    preds: Tensor,
    target: Tensor,
    *,
    input_format: str = "logits",
    ignore_index: int | None = None,
    validate_args: bool = True,
) -> Tensor:
    """Mean binary cross-entropy over every counted entry, in nats (logistic regression's loss).

    From logits it uses :math:`\\log \\sigma(z) = -\\mathrm{softplus}(-z)`, exact where ``sigmoid`` rounds to 0 or 1.

    Example:
        >>> import torch
        >>> binary_cross_entropy(torch.tensor([0.0, 2.0]), torch.tensor([1, 0]))
        tensor(1.4100, dtype=torch.float64)
    """
    stats = binary_stats(
        preds, target, input_format=input_format, ignore_index=ignore_index, validate_args=validate_args
    )
    return mean_or_nan(stats.cross_entropy, stats.count, "binary_cross_entropy")
