"""Streaming multiclass cross-entropy and perplexity."""

from __future__ import annotations

from torch import Tensor

from xent_plugin.functional._validation import (
    check_label_smoothing,
)
from xent_plugin.functional.cross_entropy import _cross_entropy_compute, _cross_entropy_update
from xent_plugin.functional.perplexity import _perplexity_compute
from xent_plugin.functional.softmax_stats import SufficientStats
from xent_plugin.metrics.base import ScoresMetric


class CrossEntropy(ScoresMetric):
    r"""Multiclass cross-entropy (log loss) :math:`-\frac{1}{N}\sum_i \sum_c p_{ic} \log q_{ic}`, in nats.

    Args:
        input_format: ``"logits"`` (default), ``"probs"`` or ``"log_probs"``.
        class_dim: 1 for (N, C) and (N, C, ...) as in ``F.cross_entropy``; -1 for tokens (B, T, V).
        ignore_index: a target value whose positions are not counted.
        label_smoothing: as in ``F.cross_entropy``.
        validate_args: check every batch (O(rows) cost); turn off on hot paths.

    ``target`` is class indices or soft labels shaped like ``preds``. The state is two float64 numbers.

    Example:
        >>> import torch
        >>> metric = CrossEntropy()
        >>> metric.update(torch.tensor([[2.0, 0.0], [0.0, 2.0]]), torch.tensor([0, 1]))
        >>> metric.update(torch.tensor([[0.0, 0.0]]), torch.tensor([1]))
        >>> metric.compute()
        tensor(0.3157, dtype=torch.float64)
    """

    stat_names = ("count", "cross_entropy")
    plot_lower_bound = 0.0

    def __init__(
        self,
        input_format: str = "logits",
        class_dim: int = 1,
        ignore_index: int | None = None,
        label_smoothing: float = 0.0,
        validate_args: bool = True,
        **kwargs,
    ) -> None:
        super().__init__(
            input_format=input_format,
            class_dim=class_dim,
            ignore_index=ignore_index,
            validate_args=validate_args,
            **kwargs,
        )
        check_label_smoothing(label_smoothing)
        self.label_smoothing = label_smoothing
        for name in self.stat_names:
            self.add_sum_state(name)

    def batch_stats(self, preds: Tensor, target: Tensor) -> SufficientStats:
        return _cross_entropy_update(
            preds,
            target,
            input_format=self.input_format,
            class_dim=self.class_dim,
            ignore_index=self.ignore_index,
            label_smoothing=self.label_smoothing,
            validate_args=self.validate_args,
        )

    def compute(self) -> Tensor:
        return _cross_entropy_compute(self.cross_entropy, self.count)


class Perplexity(CrossEntropy):
    r"""Perplexity :math:`\exp(\mathrm{CE})` of next-token predictions, in the token layout (B, T, V) by default.

    Example:
        >>> import torch
        >>> metric = Perplexity(ignore_index=-100)
        >>> metric.update(torch.zeros(2, 3, 8), torch.tensor([[1, 2, -100], [3, -100, -100]]))
        >>> metric.compute()
        tensor(8.0000, dtype=torch.float64)
    """

    higher_is_better = False
    plot_lower_bound = 1.0

    def __init__(
        self,
        input_format: str = "logits",
        class_dim: int = -1,
        ignore_index: int | None = None,
        validate_args: bool = True,
        **kwargs,
    ) -> None:
        super().__init__(
            input_format=input_format,
            class_dim=class_dim,
            ignore_index=ignore_index,
            validate_args=validate_args,
            **kwargs,
        )

    def compute(self) -> Tensor:
        return _perplexity_compute(self.cross_entropy, self.count)
