"""Streaming test of top-label calibration, with the interval of the l2 calibration error it implies."""

from __future__ import annotations

from torch import Tensor

from xent_plugin.functional._validation import check_n_bins
from xent_plugin.functional.bootstrap import check_confidence_level
from xent_plugin.functional.calibration_test import (
    MIN_VARIANCE,
    _calibration_test_compute,
    calibration_residual_bins,
    check_min_variance,
    residual_bins,
)
from xent_plugin.functional.softmax_stats import RowStatistics
from xent_plugin.metrics.base import ScoresMetric


class CalibrationTest(ScoresMetric):
    r"""A p-value for "this model is calibrated" and a confidence interval for its l2 calibration error.

    Per equal-width confidence bin the state sums the count, the residuals :math:`r = a - c`, their squares and
    the null variances :math:`c(1 - c)`: (4, n_bins) float64 numbers. Under calibration,

    .. math::
        X = \sum_g \frac{\big(\sum_{i \in g} r_i\big)^2}{\sum_{i \in g} c_i (1 - c_i)} \sim \chi^2_G

    over groups of adjacent bins merged until each null variance reaches ``min_variance``. The interval is that
    of the debiased (U-statistic) squared l2 error with a variance from the same sums; its upper end also bounds
    the ECE. See :mod:`~xent_plugin.functional.calibration_test` for the formulas and ``docs/calibration.md`` for
    the measured rejection rate, power and coverage.

    ``compute()`` returns ``statistic``, ``degrees_of_freedom``, ``p_value``, ``l2``, ``l2_lower`` and
    ``l2_upper``.

    Args:
        n_bins: equal-width confidence bins (default 15).
        confidence_level: coverage of the interval (default 0.95).
        min_variance: the null variance a group of merged bins needs (default 5).
        input_format, class_dim, ignore_index, validate_args: as in
            :class:`~xent_plugin.metrics.cross_entropy.CrossEntropy`.

    Example:
        >>> import torch
        >>> generator = torch.Generator().manual_seed(0)
        >>> logits = torch.randn(4000, 10, generator=generator)
        >>> labels = torch.multinomial(logits.softmax(dim=1), 1, generator=generator).squeeze(1)
        >>> metric = CalibrationTest()
        >>> metric.update(3 * logits[:2000], labels[:2000])  # three times too confident
        >>> metric.update(3 * logits[2000:], labels[2000:])
        >>> result = metric.compute()
        >>> bool(result["p_value"] < 1e-6), bool(result["l2_lower"] > 0.1)
        (True, True)
    """

    higher_is_better = None
    plot_lower_bound = 0.0
    plot_upper_bound = 1.0

    def __init__(
        self,
        n_bins: int = 15,
        confidence_level: float = 0.95,
        min_variance: float = MIN_VARIANCE,
        input_format: str = "logits",
        class_dim: int = 1,
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
        check_n_bins(n_bins)
        check_confidence_level(confidence_level)
        check_min_variance(min_variance)
        self.n_bins = n_bins
        self.confidence_level = confidence_level
        self.min_variance = min_variance
        self.add_sum_state("residual_bins", (4, n_bins))

    def update(self, preds: Tensor, target: Tensor) -> None:
        self.residual_bins += calibration_residual_bins(
            preds,
            target,
            n_bins=self.n_bins,
            input_format=self.input_format,
            class_dim=self.class_dim,
            ignore_index=self.ignore_index,
            validate_args=self.validate_args,
        )

    def update_from_rows(self, rows: RowStatistics) -> None:
        """Update from per-row statistics of another pass over the batch (XentMetrics' ``extras``)."""
        self.residual_bins += residual_bins(rows.confidence, rows.correct, self.n_bins, rows.counted)

    def compute(self) -> dict[str, Tensor]:
        return _calibration_test_compute(self.residual_bins, self.confidence_level, self.min_variance)
