"""Streaming binary and multilabel log loss."""

from __future__ import annotations

from torch import Tensor

from xent_plugin.functional._reduction import mean_or_nan
from xent_plugin.functional._validation import check_choice, check_flag, check_ignore_index
from xent_plugin.functional.sigmoid_stats import BINARY_INPUT_FORMATS, BinaryStats, binary_stats
from xent_plugin.metrics.base import SummedStateMetric


class BinaryCrossEntropy(SummedStateMetric):
    r"""Binary cross-entropy :math:`-\frac{1}{N}\sum_i y_i \log p_i + (1-y_i)\log(1-p_i)` over every counted
    entry, for binary (N,) and multilabel (N, L) predictions, from logits (default) or probabilities.

    Example:
        >>> import torch
        >>> metric = BinaryCrossEntropy(ignore_index=-1)
        >>> metric.update(torch.tensor([0.0, 2.0, 5.0]), torch.tensor([1, 0, -1]))
        >>> metric.compute()
        tensor(1.4100, dtype=torch.float64)
    """

    stat_names = ("count", "cross_entropy")
    plot_lower_bound = 0.0

    def __init__(
        self,
        input_format: str = "logits",
        ignore_index: int | None = None,
        validate_args: bool = True,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        check_choice("input_format", input_format, BINARY_INPUT_FORMATS)
        check_ignore_index(ignore_index)
        check_flag("validate_args", validate_args)
        self.input_format = input_format
        self.ignore_index = ignore_index
        self.validate_args = validate_args
        for name in self.stat_names:
            self.add_sum_state(name)

    def batch_stats(self, preds: Tensor, target: Tensor) -> BinaryStats:
        return binary_stats(
            preds,
            target,
            input_format=self.input_format,
            ignore_index=self.ignore_index,
            validate_args=self.validate_args,
        )

    def compute(self) -> Tensor:
        return mean_or_nan(self.cross_entropy, self.count, "binary_cross_entropy")
