"""What each gloo process of the issue-7 distributed test runs: its uneven share of every case and a synced
compute. Results go to ``out_dir/rank{rank}.pt`` for the parent to check.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist

from ._calibration_estimator_cases import CASES

ROWS = 400
SEED = 11
# Row ranges per update: 130 rows in one update on rank 0; 270 rows in two updates on rank 1.
SHARDS = {0: [(0, 130)], 1: [(130, 300), (300, 400)]}


def run(rank: int, world_size: int, port: int, out_dir: str) -> None:
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size, timeout=timedelta(seconds=60)
    )
    try:
        results = {"values": {}, "replicate_count": None}
        for case in CASES:
            preds, target = case.make_batch(ROWS, SEED)
            metric = case.make_metric()
            for start, stop in SHARDS[rank]:
                metric.update(preds[start:stop], target[start:stop])
            if case.name == "bootstrap":
                results["replicate_count"] = metric.replicate_count.clone()
            results["values"][case.name] = metric.compute()
        torch.save(results, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()
