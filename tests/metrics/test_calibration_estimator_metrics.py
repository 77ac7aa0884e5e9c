"""The issue-7 metrics keep the package's contract: fixed-size float64 sum states, streaming equals one-shot,
state_dict and pickle round trips, a safe empty compute, and a synced compute over two gloo processes.
"""

from __future__ import annotations

import pickle
import socket
import time
import warnings

import pytest
import torch
import torch.multiprocessing as mp

from xent_plugin.functional.bootstrap import poisson_weights
from xent_plugin.metrics import BootstrapIntervals, CalibrationEstimators, SmoothCalibrationError

from . import _calibration_estimators_worker as worker
from ._calibration_estimator_cases import CASES, CASES_BY_NAME, assert_values_close, multiclass_batch

UPDATE_SIZES = [1, 7, 50, 142, 200]


@pytest.fixture(autouse=True)
def one_thread():
    # Small tensors on a shared machine: extra intra-op threads only add contention.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def updated(case, rows: int = 400, seed: int = 0):
    metric = case.make_metric()
    metric.update(*case.make_batch(rows, seed))
    return metric


@pytest.mark.parametrize("case", CASES, ids=str)
def test_many_small_updates_equal_the_one_shot_function(case):
    preds, target = case.make_batch(sum(UPDATE_SIZES), 0)
    metric = case.make_metric()
    for preds_part, target_part in zip(preds.split(UPDATE_SIZES), target.split(UPDATE_SIZES), strict=True):
        metric.update(preds_part, target_part)
    assert_values_close(metric.compute(), case.one_shot(preds, target), rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_every_state_is_a_fixed_size_float64_sum(case):
    small, large = updated(case, rows=10), updated(case, rows=5000)
    for name in small.sum_state_names:
        reduce = small._reductions[name]
        assert getattr(small, name).dtype == torch.float64
        assert getattr(small, name).shape == getattr(large, name).shape
        assert reduce is not None and reduce.__name__ == "dim_zero_sum", name


@pytest.mark.parametrize("case", CASES, ids=str)
def test_state_dict_round_trip_restores_the_value(case):
    metric = updated(case)
    fresh = case.make_metric()
    fresh.load_state_dict(metric.state_dict())
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The ``compute`` method of metric")
        assert_values_close(fresh.compute(), metric.compute(), rtol=0)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_pickle_round_trip_keeps_accumulating(case):
    metric = updated(case)
    restored = pickle.loads(pickle.dumps(metric))
    more = case.make_batch(100, 1)
    metric.update(*more)
    restored.update(*more)
    assert_values_close(restored.compute(), metric.compute(), rtol=0)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_compute_before_any_update_is_nan_with_a_warning(case):
    with pytest.warns(UserWarning):
        value = case.make_metric().compute()
    values = value.values() if isinstance(value, dict) else [value]
    assert all(bool(v.isnan().all()) for v in values)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_reset_returns_to_the_empty_state(case):
    metric = updated(case)
    metric.reset()
    assert all(not bool(getattr(metric, name).any()) for name in metric.sum_state_names)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_forward_accumulates_like_update(case):
    preds, target = case.make_batch(300, 2)
    forwarded, updated_metric = case.make_metric(), case.make_metric()
    for part in range(3):
        rows = slice(100 * part, 100 * (part + 1))
        forwarded(preds[rows], target[rows])
        updated_metric.update(preds[rows], target[rows])
    assert_values_close(forwarded.compute(), updated_metric.compute(), rtol=1e-12, atol=1e-15)


def test_bootstrap_row_counter_survives_reset_and_state_dict():
    metric = BootstrapIntervals(num_replicates=10, ignore_index=-100)
    preds, target = multiclass_batch(100, 3)
    metric.update(preds, target)
    metric.reset()
    assert metric.rows_seen == 100  # a new epoch gets new weights
    fresh = BootstrapIntervals(num_replicates=10, ignore_index=-100)
    fresh.load_state_dict(metric.state_dict())
    assert fresh.rows_seen == 100


def test_estimators_table_and_curve_are_what_the_diagram_needs():
    metric = CalibrationEstimators(n_bins=10, ignore_index=-100)
    metric.update(*multiclass_batch(2000, 4))
    table = metric.equal_mass_table()
    assert set(table) == {"lower", "upper", "count", "confidence", "accuracy"} and table["count"].shape == (10,)
    curve = metric.smooth_curve(points=51)
    assert {"confidence", "accuracy", "lower", "upper", "density", "bandwidth", "smooth_ece"} <= set(curve)
    assert float(curve["smooth_ece"]) == pytest.approx(float(metric.compute()["smooth_ece"]))


def test_smooth_metric_with_a_fixed_bandwidth_uses_it():
    metric = SmoothCalibrationError(bandwidth=0.1, ignore_index=-100)
    metric.update(*multiclass_batch(500, 5))
    assert float(metric.reliability_curve()["bandwidth"]) == 0.1


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: CASES_BY_NAME["adaptive"].make_metric().__class__(norm="l3"), "`norm` must be one of"),
        (lambda: CASES_BY_NAME["classwise"].make_metric().__class__(num_classes=1), "`num_classes` must be"),
        (lambda: CASES_BY_NAME["smooth"].make_metric().__class__(bandwidth=-1.0), "`bandwidth` must be"),
        (lambda: CASES_BY_NAME["bootstrap"].make_metric().__class__(num_replicates=1), "`num_replicates` must be"),
        (lambda: CASES_BY_NAME["bootstrap"].make_metric().__class__(confidence_level=95), "`confidence_level`"),
        (lambda: CalibrationEstimators(task="multilabel", num_labels=2), "task='multilabel' is not supported"),
    ],
)
def test_bad_arguments_are_named_in_the_error(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_classwise_rejects_a_batch_with_another_number_of_classes():
    metric = CASES_BY_NAME["classwise"].make_metric()
    with pytest.raises(ValueError, match="expected num_classes=5"):
        metric.update(torch.zeros(4, 3), torch.zeros(4, dtype=torch.long))


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def rank_results(tmp_path_factory) -> list[dict]:
    out_dir = tmp_path_factory.mktemp("gloo_estimators")
    context = mp.start_processes(
        worker.run, args=(2, _free_port(), str(out_dir)), nprocs=2, join=False, start_method="spawn"
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
    return [torch.load(out_dir / f"rank{rank}.pt", weights_only=False) for rank in range(2)]


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.parametrize("case", [case for case in CASES if case.name != "bootstrap"], ids=str)
def test_synced_compute_on_two_processes_equals_the_single_process_value(case, rank_results):
    preds, target = case.make_batch(worker.ROWS, worker.SEED)
    expected = case.one_shot(preds, target)
    for results in rank_results:
        assert_values_close(results["values"][case.name], expected, rtol=1e-10, atol=1e-14)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_bootstrap_ranks_draw_their_own_weights_and_sync_the_point_values(rank_results):
    preds, target = multiclass_batch(worker.ROWS, worker.SEED)
    expected = CASES_BY_NAME["bootstrap"].one_shot(preds, target)
    for rank, results in enumerate(rank_results):
        values = results["values"]["bootstrap"]
        for name in ("cross_entropy", "accuracy", "ece"):
            torch.testing.assert_close(values[name], expected[name], rtol=1e-12, atol=0)
            assert values[f"{name}_lower"] < values[name] < values[f"{name}_upper"]
        rows = sum(stop - start for start, stop in worker.SHARDS[rank])
        counted = torch.cat([target[start:stop] for start, stop in worker.SHARDS[rank]]) != -100
        own_stream = poisson_weights(torch.arange(rows), 50, stream=rank)[:, counted].sum(dim=1)
        torch.testing.assert_close(results["replicate_count"], own_stream)
