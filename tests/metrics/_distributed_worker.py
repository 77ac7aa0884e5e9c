"""What each process of the gloo test runs: its uneven share of every case, a synced compute, and a count of
the collectives XentMetrics.compute() issues. Results go to ``out_dir/rank{rank}.pt`` for the parent to check.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist

from ._metric_cases import CASES, CASES_BY_NAME, in_float64

ROWS = 128
SEED = 7
# float64 inputs make every per-sample term independent of how rows are batched, so what is compared is the
# sync itself (float32 terms may differ in the last bit between batchings; see test_base's streaming test).
# Row ranges per update on each rank: 37 rows in one update on rank 0; 91 rows in two updates on rank 1.
SHARDS = {0: [(0, 37)], 1: [(37, 80), (80, 128)]}
COLLECTIVES = ("all_reduce", "all_gather", "all_gather_into_tensor", "all_gather_object", "broadcast", "reduce")


def run(rank: int, world_size: int, port: int, out_dir: str) -> None:
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=world_size,
        timeout=timedelta(seconds=60),
    )
    try:
        results = {"values": {}, "local_state_kept": {}, "collectives": None}
        for case in CASES:
            preds, target = in_float64(case.make_batch(ROWS, SEED))
            metric = case.make_metric()
            for start, stop in SHARDS[rank]:
                metric.update(preds[start:stop], target[start:stop])
            local_state = {name: getattr(metric, name).clone() for name in metric.sum_state_names}
            results["values"][case.name] = metric.compute()
            results["local_state_kept"][case.name] = all(
                torch.equal(getattr(metric, name), value) for name, value in local_state.items()
            )
        results["collectives"] = _count_collectives_of_xent_metrics_compute(rank)
        results["monitor_set_collectives"], results["monitor_set_values"] = _sync_xent_monitor_set(rank)
        torch.save(results, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def monitor_set():
    """XentMonitor's whole set with every extra on: XentMetrics plus the opt-in calibration estimators."""
    from xent_plugin.integrations.lightning.metric_options import MetricOptions

    # Bootstrap replicate weights depend on the rank by design, so its values would differ: left off.
    options = MetricOptions(calibration_estimators=True, temperature_scan=True, calibration_test=True)
    return options.xent_metrics(), options.extras()


def monitor_set_values(metric, extras) -> dict[str, torch.Tensor]:
    from xent_plugin.integrations.lightning.metric_options import extra_values

    return {**metric.values(), **extra_values(extras)}


def _sync_xent_monitor_set(rank: int):
    from xent_plugin.metrics.base import synced_together

    preds, target = in_float64(CASES_BY_NAME["cross_entropy"].make_batch(ROWS, SEED))
    metric, extras = monitor_set()
    for start, stop in SHARDS[rank]:
        for each in (metric, *extras.values()):
            each.update(preds[start:stop], target[start:stop])
    counts, restore = _count_collectives()
    try:
        with synced_together([metric, *extras.values()]):
            values = monitor_set_values(metric, extras)
    finally:
        restore()
    return counts, values


def _count_collectives():
    counts = dict.fromkeys(COLLECTIVES, 0)
    originals = {name: getattr(dist, name) for name in COLLECTIVES}

    def counting(name):
        def collective(*args, **kwargs):
            counts[name] += 1
            return originals[name](*args, **kwargs)

        return collective

    for name in COLLECTIVES:
        setattr(dist, name, counting(name))

    def restore():
        for name, original in originals.items():
            setattr(dist, name, original)

    return counts, restore


def _count_collectives_of_xent_metrics_compute(rank: int) -> dict[str, int]:
    case = CASES_BY_NAME["xent_metrics_soft"]
    preds, target = in_float64(case.make_batch(ROWS, SEED))
    metric = case.make_metric()
    for start, stop in SHARDS[rank]:
        metric.update(preds[start:stop], target[start:stop])
    counts, restore = _count_collectives()
    try:
        metric.compute()
    finally:
        restore()
    return counts
