"""Streaming Poisson-bootstrap intervals for cross-entropy, accuracy and ECE."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import torch.distributed as dist
from torch import Tensor

from xent_plugin.functional._validation import (
    check_int,
    check_n_bins,
)
from xent_plugin.functional.bootstrap import (
    BootstrapStats,
    _bootstrap_intervals_compute,
    bootstrap_reliability_table,
    bootstrap_row_stats,
    bootstrap_stats,
    check_confidence_level,
    check_num_replicates,
)
from xent_plugin.functional.softmax_stats import RowStatistics
from xent_plugin.metrics.base import ScoresMetric

_SUMS = tuple(f.name for f in fields(BootstrapStats) if f.name != "rows")


class BootstrapIntervals(ScoresMetric):
    r"""Cross-entropy, accuracy and ECE with percentile intervals from a streaming Poisson bootstrap.

    Every row gets an independent Poisson(1) weight :math:`w_{ib}` in each of B replicates; replicate b's
    cross-entropy is :math:`\sum_i w_{ib}\ell_i / \sum_i w_{ib}` and its ECE that of its weighted reliability
    histogram. The interval is the :math:`\alpha/2` and :math:`1-\alpha/2` percentiles of the B replicate values
    (:math:`1-\alpha` = ``confidence_level``). Replicates are sums, so they stream and all-reduce like every
    other state here: B x (3 + 3 n_bins) float64 numbers.

    The weights are a hash of (``seed``, distributed rank, row number), the row number counting every row this
    instance has seen since construction (kept in ``state_dict``, not cleared by ``reset``), so ranks and epochs
    never reuse weights and the result does not depend on how the rows were batched.

    ``compute()`` returns ``cross_entropy``, ``accuracy`` and ``ece`` (the plain point values) and
    ``<name>_lower`` / ``<name>_upper`` for each; :meth:`reliability_table` adds per-bin intervals of accuracy and
    confidence to the reliability table, for whiskers on the reliability diagram (Wilson score intervals for
    the accuracy, which cover where bootstrap percentiles of a small bin do not).

    Args:
        num_replicates: B (default 1000: the simulation in ``docs/calibration.md`` puts cross-entropy and
            accuracy coverage within a point of 95 % there, against 93-94 % at 200); the state then takes 375 KiB.
        n_bins: equal-width bins of the ECE and the table (default 15).
        confidence_level: coverage of the intervals (default 0.95).
        seed: keys the weights.
        input_format, class_dim, ignore_index, validate_args: as in
            :class:`~xent_plugin.metrics.cross_entropy.CrossEntropy`.

    Example:
        >>> import torch
        >>> generator = torch.Generator().manual_seed(0)
        >>> logits = torch.randn(2000, 5, generator=generator)
        >>> labels = torch.multinomial(logits.softmax(dim=1), 1, generator=generator).squeeze(1)
        >>> metric = BootstrapIntervals(num_replicates=100)
        >>> metric.update(logits, labels)
        >>> result = metric.compute()
        >>> bool(result["cross_entropy_lower"] < result["cross_entropy"] < result["cross_entropy_upper"])
        True
        >>> metric.reliability_table()["accuracy_upper"].shape
        torch.Size([15])
    """

    counters = ("rows_seen",)

    def __init__(
        self,
        num_replicates: int = 1000,
        n_bins: int = 15,
        confidence_level: float = 0.95,
        seed: int = 0,
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
        check_num_replicates(num_replicates)
        check_n_bins(n_bins)
        check_confidence_level(confidence_level)
        check_int("seed", seed)
        self.num_replicates = num_replicates
        self.n_bins = n_bins
        self.confidence_level = confidence_level
        self.seed = seed
        self.rows_seen = 0
        for name, shape in BootstrapStats.shapes(num_replicates, n_bins).items():
            self.add_sum_state(name, shape)

    def update(self, preds: Tensor, target: Tensor) -> None:
        stats = bootstrap_stats(
            preds,
            target,
            num_replicates=self.num_replicates,
            n_bins=self.n_bins,
            seed=self.seed,
            stream=_rank(),
            first_row=self.rows_seen,
            input_format=self.input_format,
            class_dim=self.class_dim,
            ignore_index=self.ignore_index,
            validate_args=self.validate_args,
        )
        self._add(stats)

    def update_from_rows(self, rows: RowStatistics) -> None:
        """Update from per-row statistics of another pass over the batch (XentMetrics' ``extras``)."""
        self._add(
            bootstrap_row_stats(
                rows,
                num_replicates=self.num_replicates,
                n_bins=self.n_bins,
                seed=self.seed,
                stream=_rank(),
                first_row=self.rows_seen,
            )
        )

    def _add(self, stats: BootstrapStats) -> None:
        self.rows_seen += stats.rows
        for name in _SUMS:
            getattr(self, name).add_(getattr(stats, name))

    def compute(self) -> dict[str, Tensor]:
        return _bootstrap_intervals_compute(self._stats(), self.confidence_level)

    def reliability_table(self) -> dict[str, Tensor]:
        """The reliability table with ``accuracy_lower``/``accuracy_upper`` and ``confidence_lower``/``_upper``
        per bin (Wilson's score interval for the accuracy, the replicates' percentile interval for the mean
        confidence; NaN for empty bins)."""
        return bootstrap_reliability_table(self._stats(), self.confidence_level)

    def _stats(self) -> BootstrapStats:
        return BootstrapStats(**{name: getattr(self, name) for name in _SUMS})

    def get_extra_state(self) -> dict[str, Any]:
        return {"rows_seen": self.rows_seen}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.rows_seen = int(state["rows_seen"])


def _rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
