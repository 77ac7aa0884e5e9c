"""The whole set — cross-entropy, entropy, KL, Brier, accuracy and calibration — from one pass per batch."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import fields, replace

import torch
from torch import Tensor
from torchmetrics import Metric

from xent_plugin.functional._reduction import mean_or_nan
from xent_plugin.functional._validation import check_label_smoothing
from xent_plugin.functional.calibration_error import _calibration_error_compute, reliability_table
from xent_plugin.functional.hidden_states import MAX_LOGITS, hidden_state_stats
from xent_plugin.functional.softmax_stats import RowStatistics, SufficientStats, sufficient_stats
from xent_plugin.metrics.task_metric import TaskMetric

_SCALAR_STATS = tuple(f.name for f in fields(SufficientStats) if f.name != "bins")


class XentMetrics(TaskMetric):
    r"""Every metric of this package from one pass over the logits, with one all-reduce per compute.

    A ``MetricCollection`` of separate metrics runs the softmax pass once per metric and syncs once per
    metric; this class runs it once per batch and packs its states — a dozen sums and the (3, n_bins)
    reliability histogram — into a single float64 all-reduce.

    ``compute()`` returns a dict of float64 scalars:

    - ``cross_entropy`` (binary cross-entropy for binary and multilabel tasks), ``entropy``, ``brier_score``,
      ``accuracy``, ``ece``, ``mce``, ``rmsce``; ``perplexity`` for multiclass;
    - when a reference distribution was given (``reference=`` in ``update``, or soft targets):
      ``reference_cross_entropy`` H(r, q), ``reference_entropy`` H(r) and ``kl`` KL(r || q), which satisfy
      H(r, q) = H(r) + KL(r || q).

    With soft targets, ``accuracy`` is the target's probability of the predicted class.

    Args:
        n_bins: bins of the reliability histogram (default 15).
        label_smoothing: applied to ``cross_entropy`` as in ``F.cross_entropy`` (multiclass only).
        **kwargs: the arguments of :class:`~xent_plugin.metrics.task_metric.TaskMetric`.

    Example:
        >>> import torch
        >>> metrics = XentMetrics(n_bins=10)
        >>> logits = torch.tensor([[3.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
        >>> truth = torch.tensor([[0.8, 0.1, 0.1], [0.3, 0.4, 0.3]])
        >>> metrics.update(logits, torch.tensor([0, 2]), reference=truth)
        >>> values = metrics.compute()
        >>> round(values["accuracy"].item(), 2), round(values["kl"].item(), 4)
        (0.5, 0.0592)
        >>> torch.isclose(values["reference_cross_entropy"], values["reference_entropy"] + values["kl"]).item()
        True
    """

    def __init__(self, task: str = "multiclass", n_bins: int = 15, label_smoothing: float = 0.0, **kwargs):
        super().__init__(task=task, n_bins=n_bins, **kwargs)
        check_label_smoothing(label_smoothing)
        self.label_smoothing = label_smoothing
        self.stat_names = _SCALAR_STATS + ("bins",)
        for name in _SCALAR_STATS:
            self.add_sum_state(name)
        self.add_sum_state("bins", self.bins_shape)

    def update(
        self, preds: Tensor, target: Tensor, reference: Tensor | None = None, *, extras: Sequence[Metric] = ()
    ) -> None:
        """Add a batch; ``extras`` are metrics that this pass feeds from its per-row statistics.

        An extra (:class:`~xent_plugin.metrics.CalibrationEstimators`, :class:`~xent_plugin.metrics.CalibrationTest`,
        :class:`~xent_plugin.metrics.BootstrapIntervals`, :class:`~xent_plugin.metrics.TemperatureScan`) then reads
        no logits of its own: every row's confidence, correctness and cross-entropy come from this pass, and the
        temperature scan's sums from the same cache-resident chunks. Its input options must match this metric's.
        For binary and multilabel tasks the extras read the batch themselves (one score per label).

        Example:
            >>> from xent_plugin.metrics import CalibrationTest, TemperatureScan
            >>> metrics, test, scan = XentMetrics(), CalibrationTest(), TemperatureScan()
            >>> logits, labels = torch.randn(64, 5), torch.randint(0, 5, (64,))
            >>> metrics.update(logits, labels, extras=[test, scan])
            >>> bool(torch.isclose(scan.compute()["nll"], metrics.compute()["cross_entropy"]))
            True
        """
        if self.task != "multiclass":
            if reference is not None:
                raise ValueError(f"`reference` is supported for task='multiclass' only, not {self.task!r}.")
            self.add_stats(self.batch_stats(preds, target))
            for extra in extras:
                extra.update(preds, target)
            return
        self._check_extras(extras)
        batches: list[RowStatistics] = []
        self.add_stats(
            sufficient_stats(
                preds,
                target,
                reference,
                input_format=self.input_format,
                class_dim=self.class_dim,
                ignore_index=self.ignore_index,
                label_smoothing=self.label_smoothing,
                n_bins=self.n_bins,
                validate_args=self.validate_args,
                chunk_reducers=[extra.chunk_reducer for extra in extras if extra.chunk_reducer is not None],
                on_rows=batches.append if extras else None,
            )
        )
        _feed(extras, batches)  # only now: the batch's checks have passed

    def update_from_hidden(
        self,
        hidden: Tensor,
        head_weight: Tensor,
        target: Tensor,
        head_bias: Tensor | None = None,
        max_logits: int = MAX_LOGITS,
        *,
        extras: Sequence[Metric] = (),
    ) -> None:
        """Update from final hidden states and the output head, holding at most ``max_logits`` logits at once.

        The same states as ``update(hidden @ head_weight.T + head_bias, target)`` with ``class_dim=-1``, from
        :func:`~xent_plugin.functional.hidden_states.hidden_state_stats` (multiclass logits only). ``extras`` as in
        :meth:`update`, except those that need whole rows of logits (the temperature scan): the vocabulary
        arrives in blocks here.

        Example:
            >>> metrics = XentMetrics()
            >>> hidden, head = torch.randn(2, 5, 4), torch.randn(11, 4)
            >>> metrics.update_from_hidden(hidden, head, torch.randint(0, 11, (2, 5)), max_logits=16)
            >>> metrics.count.item()
            10.0
        """
        if self.task != "multiclass" or self.input_format != "logits":
            raise ValueError(
                "`update_from_hidden` needs task='multiclass' and input_format='logits', "
                f"got task={self.task!r}, input_format={self.input_format!r}."
            )
        self._check_extras(extras)
        whole_rows = [type(extra).__name__ for extra in extras if extra.chunk_reducer is not None]
        if whole_rows:
            raise ValueError(f"{whole_rows} need whole rows of logits, which `update_from_hidden` never holds.")
        batches: list[RowStatistics] = []
        self.add_stats(
            hidden_state_stats(
                hidden,
                head_weight,
                target,
                head_bias,
                ignore_index=self.ignore_index,
                label_smoothing=self.label_smoothing,
                n_bins=self.n_bins,
                max_logits=max_logits,
                validate_args=self.validate_args,
                on_rows=batches.append if extras else None,
            )
        )
        _feed(extras, batches)

    def _check_extras(self, extras: Sequence[Metric]) -> None:
        for extra in extras:
            if not hasattr(extra, "update_from_rows"):
                raise TypeError(f"`extras` takes metrics with `update_from_rows`, got {type(extra).__name__}.")
            for option in ("input_format", "class_dim", "ignore_index"):
                if getattr(extra, option) != getattr(self, option):
                    raise ValueError(
                        f"extra {type(extra).__name__} has {option}={getattr(extra, option)!r} but this XentMetrics "
                        f"has {option}={getattr(self, option)!r}; an extra takes this metric's rows."
                    )

    def add_stats(self, stats) -> None:
        for name in self.stat_names:
            value = getattr(stats, name, None)
            if value is not None:
                getattr(self, name).add_(value)

    def compute(self) -> dict[str, Tensor]:
        return self.values()

    def values(self) -> dict[str, Tensor]:
        """The values of the current (local or already synced) states, without syncing."""
        count = self.count
        result = {
            "cross_entropy": mean_or_nan(self.cross_entropy, count, "cross_entropy"),
            "entropy": mean_or_nan(self.entropy, count, "entropy"),
            "brier_score": mean_or_nan(self.brier, count, "brier_score"),
            "accuracy": mean_or_nan(self.correct, count, "accuracy"),
        }
        if self.task == "multiclass":
            result["perplexity"] = result["cross_entropy"].exp()
        for name, norm in (("ece", "l1"), ("mce", "max"), ("rmsce", "l2")):
            result[name] = _calibration_error_compute(self.bins, norm).nanmean()
        if self.reference_count.item() > 0:
            result["reference_cross_entropy"] = self.reference_cross_entropy / self.reference_count
            result["reference_entropy"] = self.reference_entropy / self.reference_count
            result["kl"] = self.kl / self.reference_count
        return result

    def reliability_table(self) -> dict[str, Tensor]:
        """Per bin: ``lower``, ``upper``, ``count``, mean ``confidence`` and ``accuracy`` (NaN when empty)."""
        return reliability_table(self.bins)

    def state_bytes(self) -> int:
        """Bytes held by the metric's state; the same for ten samples as for ten million."""
        return sum(getattr(self, name).numel() * 8 for name in self.sum_state_names)


def _feed(extras: Sequence[Metric], batches: list[RowStatistics]) -> None:
    """Give each extra every batch of rows, with only its own chunk reducer's sums."""
    reducer_index = itertools.count()
    positions = [None if extra.chunk_reducer is None else next(reducer_index) for extra in extras]
    for rows in batches:
        for extra, position in zip(extras, positions, strict=True):
            own_sums = () if position is None else (rows.chunk_sums[position],)
            extra.update_from_rows(replace(rows, chunk_sums=own_sums))


__all__ = ["XentMetrics", "torch"]
