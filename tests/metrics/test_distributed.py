"""Two real gloo processes on 127.0.0.1, each with an uneven share of the data: every metric's synced compute
equals the single-process value on all of it, and XentMetrics syncs with exactly one all-reduce.
"""

from __future__ import annotations

import socket
import time

import pytest
import torch
import torch.multiprocessing as mp

from . import _distributed_worker as worker
from ._metric_cases import CASES, CASES_BY_NAME, assert_values_close, in_float64

WORLD_SIZE = 2
pytestmark = [pytest.mark.timeout(240), pytest.mark.slow]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def rank_results(tmp_path_factory) -> list[dict]:
    """Start the two processes, wait for them (killing them past the deadline), and load what each wrote."""
    out_dir = tmp_path_factory.mktemp("gloo")
    context = mp.start_processes(
        worker.run,
        args=(WORLD_SIZE, _free_port(), str(out_dir)),
        nprocs=WORLD_SIZE,
        join=False,
        start_method="spawn",
    )
    deadline = time.monotonic() + 180
    try:
        while not context.join(timeout=1):
            if time.monotonic() > deadline:
                pytest.fail("the gloo processes did not finish within 180 s")
    finally:
        for process in context.processes:
            if process.is_alive():
                process.kill()
                process.join()
    return [torch.load(out_dir / f"rank{rank}.pt", weights_only=False) for rank in range(WORLD_SIZE)]


def _single_process_value(case):
    preds, target = in_float64(case.make_batch(worker.ROWS, worker.SEED))
    metric = case.make_metric()
    metric.update(preds, target)
    return metric.compute()


def test_the_shards_are_uneven_and_cover_every_row_once():
    rows = [row for rank in range(WORLD_SIZE) for start, stop in worker.SHARDS[rank] for row in range(start, stop)]
    assert sorted(rows) == list(range(worker.ROWS))
    assert len({sum(stop - start for start, stop in worker.SHARDS[rank]) for rank in range(WORLD_SIZE)}) == 2


@pytest.mark.parametrize("case", CASES, ids=str)
def test_synced_compute_on_every_rank_equals_the_single_process_value(case, rank_results):
    expected = _single_process_value(case)
    for results in rank_results:
        assert_values_close(results["values"][case.name], expected, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_compute_leaves_each_rank_its_local_state(case, rank_results):
    assert all(results["local_state_kept"][case.name] for results in rank_results)


def test_xent_metrics_compute_issues_one_all_reduce_and_no_gather(rank_results):
    for results in rank_results:
        counts = results["collectives"]
        assert counts["all_reduce"] == 1
        assert sum(counts.values()) == 1, counts


def test_xent_monitor_whole_set_syncs_in_one_all_reduce(rank_results):
    for results in rank_results:
        counts = results["monitor_set_collectives"]
        assert counts["all_reduce"] == 1
        assert sum(counts.values()) == 1, counts


def test_xent_monitor_whole_set_synced_equals_single_process(rank_results):
    preds, target = in_float64(CASES_BY_NAME["cross_entropy"].make_batch(worker.ROWS, worker.SEED))
    metric, extras = worker.monitor_set()
    for each in (metric, *extras.values()):
        each.update(preds, target)
    expected = worker.monitor_set_values(metric, extras)
    for results in rank_results:
        assert_values_close(results["monitor_set_values"], expected, rtol=1e-10)
