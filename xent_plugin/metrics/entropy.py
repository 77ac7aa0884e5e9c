"""Streaming predictive entropy."""

from __future__ import annotations

from torch import Tensor

from xent_plugin.functional._validation import INPUT_FORMATS, check_choice, check_class_dim, check_flag
from xent_plugin.functional.entropy import _entropy_compute, _entropy_update
from xent_plugin.functional.softmax_stats import SufficientStats
from xent_plugin.metrics.base import SummedStateMetric


class Entropy(SummedStateMetric):
    r"""Mean predictive entropy :math:`H(q) = -\sum_c q_c \log q_c` of the model's distribution, in nats.

    High entropy is an uncertain model. Compared with the cross-entropy it shows whether the loss comes from
    hedging (high H(q)) or from confident mistakes (low H(q), high cross-entropy). ``target`` is accepted
    and ignored, so the metric fits a ``MetricCollection`` called with ``(preds, target)``.

    Example:
        >>> import torch
        >>> metric = Entropy()
        >>> metric.update(torch.zeros(4, 8))
        >>> metric.compute()
        tensor(2.0794, dtype=torch.float64)
    """

    stat_names = ("count", "entropy")
    plot_lower_bound = 0.0

    def __init__(self, input_format: str = "logits", class_dim: int = 1, validate_args: bool = True, **kwargs) -> None:
        super().__init__(**kwargs)
        check_choice("input_format", input_format, INPUT_FORMATS)
        check_class_dim(class_dim)
        check_flag("validate_args", validate_args)
        self.input_format = input_format
        self.class_dim = class_dim
        self.validate_args = validate_args
        for name in self.stat_names:
            self.add_sum_state(name)

    def update(self, preds: Tensor, target: Tensor | None = None) -> None:
        self.add_stats(self.batch_stats(preds, target))

    def batch_stats(self, preds: Tensor, target: Tensor | None = None) -> SufficientStats:
        return _entropy_update(
            preds, input_format=self.input_format, class_dim=self.class_dim, validate_args=self.validate_args
        )

    def compute(self) -> Tensor:
        return _entropy_compute(self.entropy, self.count)
