"""The base of every metric here: float64 sum states, synced with one packed all-reduce."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor
from torchmetrics import Metric

from xent_plugin.functional._validation import (
    INPUT_FORMATS,
    check_choice,
    check_class_dim,
    check_flag,
    check_ignore_index,
)
from xent_plugin.functional.sigmoid_stats import BinaryStats
from xent_plugin.functional.softmax_stats import ACCUMULATE_DTYPE, ChunkReducer, SufficientStats


class SummedStateMetric(Metric):
    """A ``torchmetrics.Metric`` whose states are fixed-size float64 sums named after the statistics they keep.

    Subclasses list the statistics in ``stat_names`` and turn a batch into statistics in ``batch_stats``;
    ``update`` adds them. Because every state is a sum, a distributed ``compute`` packs all of them into one
    float64 vector and all-reduces it once, instead of torchmetrics' all-gather per state.

    Three guards keep a state what it claims to be:

    - ``options_digest``, a non-persistent state, holds a digest of the class and its options (refreshed at each
      ``update``). A ``MetricCollection`` puts metrics whose states are equal after the first update into one
      compute group that shares state; the digest keeps two metrics that differ in any option (say
      ``ignore_index``, with no ignored row in the first batch) apart;
    - ``load_state_dict`` refuses a state of another shape, naming it and both shapes, and keeps float64;
    - unpickling copies the states: ``torch.multiprocessing`` pickles CPU tensors as handles to shared memory,
      so a metric sent to ``ddp_spawn`` workers would otherwise have every rank add into one tensor.
    """

    full_state_update = False
    is_differentiable = False
    higher_is_better = False
    stat_names: tuple[str, ...] = ()
    # What a metric with ``update_from_rows`` needs of each chunk's whole rows besides the per-row statistics.
    chunk_reducer: ChunkReducer | None = None
    # Plain attributes that count progress rather than configure: kept out of the options digest, which a change
    # would otherwise rebuild (and copy to the device) at every update.
    counters: tuple[str, ...] = ()

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._wrap_other_updates()
        self._digested_options: tuple | None = None
        self.add_state(OPTIONS_STATE, default=torch.zeros(16, dtype=ACCUMULATE_DTYPE), dist_reduce_fx="max")
        self._persistent[OPTIONS_STATE] = False

    def add_sum_state(self, name: str, shape: tuple[int, ...] = ()) -> None:
        self.add_state(name, default=torch.zeros(shape, dtype=ACCUMULATE_DTYPE), dist_reduce_fx="sum", persistent=True)

    @property
    def sum_state_names(self) -> list[str]:
        """The names of the float64 sum states (every state but ``options_digest``)."""
        return sum_state_names(self)

    def _wrap_update(self, update: Callable) -> Callable:
        wrapped = super()._wrap_update(update)

        @functools.wraps(update)
        def update_with_options(*args: Any, **kwargs: Any) -> None:
            self._digest_options()
            wrapped(*args, **kwargs)

        return update_with_options

    def _digest_options(self) -> None:
        options = _options(self)
        if options == self._digested_options:
            return
        digest = hashlib.blake2b(repr(options).encode(), digest_size=16).digest()
        state = torch.tensor(list(digest), dtype=ACCUMULATE_DTYPE, device=getattr(self, OPTIONS_STATE).device)
        self._defaults[OPTIONS_STATE] = state
        setattr(self, OPTIONS_STATE, state.clone())
        self._digested_options = options

    def _wrap_other_updates(self) -> None:
        for name in _OTHER_UPDATES:
            if hasattr(type(self), name):  # counted as updates, so that compute() does not warn it was never updated
                setattr(self, name, self._wrap_update(getattr(type(self), name).__get__(self)))

    def __getstate__(self) -> dict[str, Any]:
        return {name: value for name, value in super().__getstate__().items() if name not in _OTHER_UPDATES}

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._wrap_other_updates()
        # torch.multiprocessing rebuilds CPU tensors on shared memory; copies make them this process's own.
        for name in self._defaults:
            self._defaults[name] = self._defaults[name].clone()
            setattr(self, name, getattr(self, name).clone())

    def state_dict(self, destination: dict | None = None, prefix: str = "", keep_vars: bool = False) -> dict:
        # Every state is one tensor, so a clone is the copy that torchmetrics' deepcopy makes, at a tenth of its cost;
        # Lightning saves the states of every stage's metrics with each checkpoint.
        destination = torch.nn.Module.state_dict(self, destination=destination, prefix=prefix, keep_vars=keep_vars)
        for name in self._defaults:
            if self._persistent[name]:
                state = getattr(self, name)
                destination[prefix + name] = (state if keep_vars else state.detach()).clone()
        return destination

    def _load_from_state_dict(
        self,
        state_dict: dict,
        prefix: str,
        local_metadata: dict,
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        for name in self.sum_state_names:
            key = prefix + name
            if key not in state_dict:
                continue
            loaded, current = state_dict[key], getattr(self, name)
            if not isinstance(loaded, Tensor) or loaded.shape != current.shape:
                shape = tuple(loaded.shape) if isinstance(loaded, Tensor) else type(loaded).__name__
                raise ValueError(
                    f"{type(self).__name__}.load_state_dict: state `{name}` has shape {shape} in the state_dict "
                    f"but {tuple(current.shape)} in this metric; was it saved from a metric with other options "
                    "(n_bins, num_labels, ...)?"
                )
            state_dict[key] = loaded.to(device=current.device, dtype=ACCUMULATE_DTYPE, copy=True)
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

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
        all_reduce_sum_states(self, self.sum_state_names, process_group or self.process_group)


class ScoresMetric(SummedStateMetric):
    """A metric of multiclass scores: checks and holds the input options that all of them take.

    Args:
        input_format: ``"logits"``, ``"probs"`` or ``"log_probs"``.
        class_dim: the class dimension: 1 as in ``F.cross_entropy``, or -1 for (B, T, V) tokens.
        ignore_index: a target value whose rows are not counted.
        validate_args: check every batch's shapes and values.
    """

    def __init__(
        self,
        input_format: str = "logits",
        class_dim: int = 1,
        ignore_index: int | None = None,
        validate_args: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        check_choice("input_format", input_format, INPUT_FORMATS)
        check_class_dim(class_dim)
        check_ignore_index(ignore_index)
        check_flag("validate_args", validate_args)
        self.input_format = input_format
        self.class_dim = class_dim
        self.ignore_index = ignore_index
        self.validate_args = validate_args


OPTIONS_STATE = "options_digest"
# Ways to add a batch besides ``update``: from per-row statistics (XentMetrics' extras) or from hidden states.
_OTHER_UPDATES = ("update_from_rows", "update_from_hidden")


def sum_state_names(metric: Metric) -> list[str]:
    """The states of ``metric`` that are sums over rows and ranks."""
    return [name for name in metric._defaults if name != OPTIONS_STATE]


def _options(metric: Metric) -> tuple:
    """The class and every plain attribute of ``metric`` that is not a state: what its updates depend on."""
    values = []
    for name, value in sorted(vars(metric).items()):
        if name.startswith("_") or name == "training" or name in metric._defaults or name in metric.counters:
            continue
        if isinstance(value, Tensor):
            # Identity, not values: reading values back would cost a device sync on every update.
            value = (tuple(value.shape), str(value.dtype), str(value.device), value.data_ptr(), value._version)
        elif not isinstance(value, (str, int, float, bool, tuple, type(None))):
            continue  # modules, functions, process groups
        values.append((name, value))
    return (type(metric).__module__, type(metric).__qualname__, tuple(values))


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
    pairs = [(metric, name) for metric in metrics for name in sum_state_names(metric)]
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
