"""Streaming top-label calibration error with a fixed-size reliability histogram."""

from __future__ import annotations

from torch import Tensor

from xent_plugin.functional._validation import NORMS, check_choice
from xent_plugin.functional.calibration_error import (
    AVERAGES,
    _calibration_error_average,
    _calibration_error_compute,
    reliability_table,
)
from xent_plugin.metrics.task_metric import TaskMetric


class CalibrationError(TaskMetric):
    r"""Top-label calibration error: ECE (``norm="l1"``), RMSCE (``"l2"``) or MCE (``"max"``).

    The state is a (3, n_bins) float64 histogram of per-bin count, summed confidence and summed correctness
    (per label for multilabel): its size does not grow with the data and a distributed compute all-reduces
    ``3 * n_bins`` numbers. A confidence of exactly 1.0 falls in the last bin. For binary tasks,
    ``calibration_mode`` picks top-label or positive-class calibration.

    Args:
        n_bins: equal-width confidence bins (default 15).
        norm: ``"l1"``, ``"l2"`` or ``"max"``.
        average: multilabel only, ``"macro"`` or ``"none"`` (per label).
        **kwargs: the arguments of :class:`~xent_plugin.metrics.task_metric.TaskMetric`.

    Example:
        >>> import torch
        >>> metric = CalibrationError(input_format="probs", n_bins=5)
        >>> metric.update(torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8]]), torch.tensor([0, 1, 1]))
        >>> metric.compute()
        tensor(0.3000, dtype=torch.float64)
        >>> metric.reliability_table()["count"]
        tensor([0., 0., 0., 1., 2.], dtype=torch.float64)
    """

    stat_names = ("bins",)
    plot_lower_bound = 0.0
    plot_upper_bound = 1.0

    def __init__(
        self,
        task: str = "multiclass",
        n_bins: int = 15,
        norm: str = "l1",
        average: str = "macro",
        **kwargs,
    ) -> None:
        super().__init__(task=task, n_bins=n_bins, **kwargs)
        check_choice("norm", norm, NORMS)
        check_choice("average", average, AVERAGES)
        self.norm = norm
        self.average = average
        self.add_sum_state("bins", self.bins_shape)

    def compute(self) -> Tensor:
        return _calibration_error_average(_calibration_error_compute(self.bins, self.norm), self.average)

    def reliability_table(self) -> dict[str, Tensor]:
        """Per bin: ``lower``, ``upper``, ``count``, mean ``confidence`` and ``accuracy`` (NaN when empty)."""
        return reliability_table(self.bins)
