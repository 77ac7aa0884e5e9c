"""The base of every metric here: float64 sum states, synced with one packed all-reduce."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor
from torchmetrics import Metric

from xent_plugin.functional.sigmoid_stats import BinaryStats
from xent_plugin.functional.softmax_stats import ACCUMULATE_DTYPE, SufficientStats


class SummedStateMetric(Metric):
    """A ``torchmetrics.Metric`` whose states are fixed-size float64 sums named after the statistics they keep.

    Subclasses list the statistics in ``stat_names`` and turn a batch into statistics in ``batch_stats``;
    ``update`` adds them. Because every state is a sum, a distributed ``compute`` packs all of them into one
    float64 vector and all-reduces it once, instead of torchmetrics' all-gather per state.
    """

    full_state_update = False
    is_differentiable = False
    higher_is_better = False
    stat_names: tuple[str, ...] = ()

    def add_sum_state(self, name: str, shape: tuple[int, ...] = ()) -> None:
        self.add_state(name, default=torch.zeros(shape, dtype=ACCUMULATE_DTYPE), dist_reduce_fx="sum", persistent=True)

    def batch_stats(self, preds: Tensor, target: Tensor) -> SufficientStats | BinaryStats:
        raise NotImplementedError

    def update(self, preds: Tensor, target: Tensor) -> None:
        self.add_stats(self.batch_stats(preds, target))

    def add_stats(self, stats: SufficientStats | BinaryStats) -> None:
        for name in self.stat_names:
            getattr(self, name).add_(getattr(stats, name))

    def _apply(self, fn: Callable, exclude_state: Sequence[str] = ()) -> Metric:
        # Module.to(dtype) would cast the states (torchmetrics guards .half()/.float() only, and Lightning's
        # "16-true" precision calls .to(dtype)); move them to the new device but keep them float64.
        this = super()._apply(fn, exclude_state=tuple(self._defaults))
        for name, default in this._defaults.items():
            device = fn(default.new_empty(0)).device
            this._defaults[name] = default.to(device)
            setattr(this, name, getattr(this, name).to(device))
        return this

    def plot(self, val: Any = None, ax: Any = None) -> Any:
        """Plot the value (or a sequence of values) with torchmetrics' plotting; returns ``(fig, ax)``."""
        return self._plot(val, ax)

    def _sync_dist(self, dist_sync_fn: Callable | None = None, process_group: Any | None = None) -> None:
        all_reduce_sum_states(self, list(self._defaults), process_group or self.process_group)


def all_reduce_sum_states(metric: Metric, names: list[str], process_group: Any | None = None) -> None:
    """Sum the named float64 states of ``metric`` across ranks in a single all-reduce."""
    _all_reduce_packed([(metric, name) for name in names], process_group)


@contextmanager
def synced_together(metrics: Sequence[Metric], process_group: Any | None = None) -> Iterator[None]:
    """Inside the block, every state of every metric holds its sum over ranks; local states return after.

    One packed float64 all-reduce serves all the metrics, where syncing each would cost one collective per
    metric. Create the metrics with ``sync_on_compute=False`` so that ``compute()`` inside the block does
    not sync again. Outside a process group this does nothing.

    Example:
        >>> from xent_plugin.metrics import CrossEntropy, Entropy
        >>> metrics = [CrossEntropy(sync_on_compute=False), Entropy(sync_on_compute=False)]
        >>> with synced_together(metrics):  # single process: states are already the totals
        ...     metrics[0].count.item()
        0.0
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size(process_group) == 1:
        yield
        return
    pairs = [(metric, name) for metric in metrics for name in metric._defaults]
    local = [getattr(metric, name) for metric, name in pairs]
    _all_reduce_packed(pairs, process_group)
    try:
        yield
    finally:
        for (metric, name), state in zip(pairs, local, strict=True):
            setattr(metric, name, state)


def _all_reduce_packed(pairs: list[tuple[Metric, str]], process_group: Any | None) -> None:
    states = [getattr(metric, name) for metric, name in pairs]
    packed = torch.cat([state.reshape(-1) for state in states])
    dist.all_reduce(packed, op=dist.ReduceOp.SUM, group=process_group)
    offset = 0
    for (metric, name), state in zip(pairs, states, strict=True):
        setattr(metric, name, packed[offset : offset + state.numel()].view_as(state))
        offset += state.numel()
