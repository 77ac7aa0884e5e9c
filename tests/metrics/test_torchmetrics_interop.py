"""Playing well with torchmetrics: MetricCollection, .to(), pickling, state_dict, plot()."""

from __future__ import annotations

import pickle

import pytest
import torch
from torchmetrics import MetricCollection

from xent_plugin.metrics import BrierScore, CalibrationError, CrossEntropy, Entropy, Perplexity

from ._metric_cases import CASES, assert_values_close, multiclass_batch


def _updated(case, rows: int = 64, seed: int = 0):
    metric = case.make_metric()
    metric.update(*case.make_batch(rows, seed))
    return metric


def _states(metric) -> dict[str, torch.Tensor]:
    return {name: getattr(metric, name) for name in metric.sum_state_names}


@pytest.mark.parametrize("case", CASES, ids=str)
def test_pickle_round_trip_keeps_the_accumulated_state_and_keeps_accumulating(case):
    metric = _updated(case)
    restored = pickle.loads(pickle.dumps(metric))
    assert_values_close(restored.compute(), metric.compute(), rtol=0)
    more = case.make_batch(32, 1)
    metric.update(*more)
    restored.update(*more)
    assert_values_close(restored.compute(), metric.compute(), rtol=0)


# A freshly built metric has seen no update() of its own, so torchmetrics warns that compute() comes first.
@pytest.mark.filterwarnings("ignore:The ``compute`` method of metric")
@pytest.mark.parametrize("case", CASES, ids=str)
def test_state_dict_carries_every_accumulated_state(case):
    metric = _updated(case)
    state = metric.state_dict()
    assert set(state) == set(metric.sum_state_names)
    fresh = case.make_metric()
    fresh.load_state_dict(state)
    for name, value in _states(metric).items():
        assert torch.equal(getattr(fresh, name), value), name
    assert_values_close(fresh.compute(), metric.compute(), rtol=0)


@pytest.mark.parametrize("case", CASES, ids=str)
@pytest.mark.parametrize("target", ["cpu", torch.device("cpu"), torch.float64])
def test_to_keeps_float64_states_and_values(case, target):
    metric = _updated(case)
    expected = metric.compute()
    moved = metric.to(target)
    assert all(state.dtype == torch.float64 and state.device.type == "cpu" for state in _states(moved).values())
    assert_values_close(moved.compute(), expected, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_to_a_lower_precision_dtype_keeps_float64_states(dtype):
    metric = CrossEntropy().to(dtype)
    assert all(state.dtype == torch.float64 for state in _states(metric).values())


@pytest.mark.parametrize("case", CASES, ids=str)
def test_half_and_float_keep_float64_states(case):
    metric = case.make_metric().half().float()
    assert all(state.dtype == torch.float64 for state in _states(metric).values())


@pytest.mark.parametrize("case", CASES, ids=str)
def test_plot_returns_a_figure_and_axes(case, close_figures):
    import matplotlib.pyplot as plt

    fig, ax = _updated(case).plot()
    assert isinstance(fig, plt.Figure) and isinstance(ax, plt.Axes)


def test_metric_collection_gives_each_metric_its_standalone_value():
    metrics = {
        "cross_entropy": lambda: CrossEntropy(),
        "perplexity": lambda: Perplexity(class_dim=1),
        "entropy": lambda: Entropy(),
        "brier_score": lambda: BrierScore(),
        "ece": lambda: CalibrationError(n_bins=10),
        "mce": lambda: CalibrationError(n_bins=10, norm="max"),
    }
    collection = MetricCollection({name: make() for name, make in metrics.items()})
    standalone = {name: make() for name, make in metrics.items()}
    for seed, rows in enumerate([30, 50, 17]):
        batch = multiclass_batch(rows, seed)
        collection.update(*batch)
        for metric in standalone.values():
            metric.update(*batch)
    values = collection.compute()
    assert set(values) == set(metrics)
    for name, metric in standalone.items():
        assert_values_close(values[name], metric.compute(), rtol=1e-12)


def test_metric_collection_forward_returns_every_batch_value():
    collection = MetricCollection([CrossEntropy(), Entropy(), BrierScore()])
    batch = multiclass_batch(40, 3)
    values = collection(*batch)
    expected = CrossEntropy()
    expected.update(*batch)
    assert_values_close(values["CrossEntropy"], expected.compute(), rtol=1e-12)
    assert set(values) == {"CrossEntropy", "Entropy", "BrierScore"}


def test_metric_collection_reset_clears_every_metric():
    collection = MetricCollection([CrossEntropy(), CalibrationError()])
    collection.update(*multiclass_batch(20, 4))
    collection.reset()
    for metric in collection.values():
        assert all(not state.any() for state in _states(metric).values())
