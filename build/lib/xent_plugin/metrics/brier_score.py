"""Streaming Brier score."""

from __future__ import annotations

from torch import Tensor

from xent_plugin.functional.brier_score import _brier_score_compute
from xent_plugin.metrics.task_metric import TaskMetric


class BrierScore(TaskMetric):
    r"""Mean Brier score: :math:`\sum_c (q_c - y_c)^2` per sample for multiclass (range [0, 2]),
    :math:`(p - y)^2` for binary and per multilabel entry (range [0, 1], as sklearn's ``brier_score_loss``).

    Takes the arguments of :class:`~xent_plugin.metrics.task_metric.TaskMetric`.

    Example:
        >>> import torch
        >>> metric = BrierScore(input_format="probs")
        >>> metric.update(torch.tensor([[0.7, 0.3], [0.5, 0.5]]), torch.tensor([0, 1]))
        >>> metric.compute()
        tensor(0.3400, dtype=torch.float64)
    """

    stat_names = ("count", "brier")
    plot_lower_bound = 0.0

    def __init__(self, task: str = "multiclass", **kwargs) -> None:
        super().__init__(task=task, **kwargs)
        for name in self.stat_names:
            self.add_sum_state(name)

    def compute(self) -> Tensor:
        return _brier_score_compute(self.brier, self.count)
