"""Run in spawned processes by test_state_guards: each adds its own rows to a metric it received pickled."""

from __future__ import annotations

import torch


def add_rows(rank: int, metric, results) -> None:
    metric.update(torch.zeros(rank + 1, 3), torch.zeros(rank + 1, dtype=torch.long))
    results.put((rank, metric.count.item(), metric.count.is_shared()))
