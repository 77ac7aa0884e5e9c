"""Metric states stay what they claim to be: not shared by differently configured metrics in a
MetricCollection, not loaded from a state of another shape or dtype, not shared between processes."""

from __future__ import annotations

import pytest
import torch
import torch.multiprocessing as mp
from torchmetrics import MetricCollection

from tests.metrics._spawn_worker import add_rows
from xent_plugin.metrics import (
    BootstrapIntervals,
    BrierScore,
    CalibrationError,
    CrossEntropy,
    Perplexity,
    TemperatureScan,
    XentMetrics,
)

LOGITS = torch.randn(8, 4, generator=torch.Generator().manual_seed(0))
NO_ZEROS = torch.tensor([1, 2, 3, 1, 2, 3, 1, 2])
WITH_ZEROS = torch.tensor([0, 0, 3, 1, 0, 3, 1, 2])


def _alone(make, batches):
    metric = make()
    for target in batches:
        metric.update(LOGITS, target)
    return metric.compute()


def test_metrics_differing_only_in_ignore_index_keep_their_own_state_in_a_collection():
    # The first batch holds no class 0, so both metrics' states are equal when torchmetrics forms its groups.
    collection = MetricCollection({"plain": CrossEntropy(), "ignoring_zero": CrossEntropy(ignore_index=0)})
    for target in (NO_ZEROS, WITH_ZEROS):
        collection.update(LOGITS, target)
    values = collection.compute()
    assert sorted(map(sorted, collection.compute_groups.values())) == [["ignoring_zero"], ["plain"]]
    torch.testing.assert_close(values["plain"], _alone(CrossEntropy, [NO_ZEROS, WITH_ZEROS]), rtol=0, atol=0)
    expected = _alone(lambda: CrossEntropy(ignore_index=0), [NO_ZEROS, WITH_ZEROS])
    torch.testing.assert_close(values["ignoring_zero"], expected, rtol=0, atol=0)
    assert values["plain"] != values["ignoring_zero"]


@pytest.mark.parametrize(
    "make_pair",
    [
        lambda: (CrossEntropy(), Perplexity(class_dim=1)),  # same states and options, another class
        lambda: (CrossEntropy(), CrossEntropy(label_smoothing=0.0 + 1e-12)),
        lambda: (CalibrationError(norm="l1"), CalibrationError(norm="max")),
        lambda: (BrierScore(), BrierScore(validate_args=False)),
        lambda: (TemperatureScan(), TemperatureScan(temperatures=torch.tensor([0.5, 1.0, 2.0, 4.0]))),
    ],
    ids=["class", "label_smoothing", "norm", "validate_args", "temperatures"],
)
def test_metrics_whose_options_or_class_differ_are_never_grouped(make_pair):
    first, second = make_pair()
    collection = MetricCollection({"first": first, "second": second})
    collection.update(LOGITS, NO_ZEROS)
    assert len(collection.compute_groups) == 2


def test_identically_configured_metrics_still_share_one_compute_group():
    collection = MetricCollection({"one": CrossEntropy(ignore_index=0), "two": CrossEntropy(ignore_index=0)})
    for target in (NO_ZEROS, WITH_ZEROS):
        collection.update(LOGITS, target)
    assert list(collection.compute_groups.values()) == [["one", "two"]]
    torch.testing.assert_close(
        collection.compute()["two"], _alone(lambda: CrossEntropy(ignore_index=0), [NO_ZEROS, WITH_ZEROS])
    )


def test_the_options_digest_is_neither_saved_nor_summed():
    metric = XentMetrics()
    metric.update(LOGITS, NO_ZEROS)
    assert "options_digest" not in metric.state_dict()
    assert "options_digest" not in metric.sum_state_names
    assert metric.state_bytes() == 8 * sum(getattr(metric, name).numel() for name in metric.sum_state_names)


def test_a_state_dict_of_another_shape_is_refused_naming_the_state_and_both_shapes():
    saved = CalibrationError(n_bins=15)
    saved.update(LOGITS, NO_ZEROS)
    target = CalibrationError(n_bins=10)
    with pytest.raises(ValueError, match=r"state `bins` has shape \(3, 15\) in the state_dict but \(3, 10\)"):
        target.load_state_dict(saved.state_dict())
    assert target.bins.shape == (3, 10)


def test_a_loaded_float32_state_stays_float64_and_is_not_aliased():
    saved = XentMetrics()
    saved.update(LOGITS, NO_ZEROS)
    state = {name: value.float() for name, value in saved.state_dict().items()}
    loaded = XentMetrics()
    loaded.load_state_dict(state)
    assert all(getattr(loaded, name).dtype == torch.float64 for name in loaded.sum_state_names)
    loaded.update(LOGITS, NO_ZEROS)
    assert state["count"].item() == 8  # the update added to the metric's own copy
    torch.testing.assert_close(loaded.count, 2 * saved.count)


def test_states_sent_to_spawned_processes_are_private_to_each():
    # torch.multiprocessing pickles CPU tensors as handles to one shared-memory block, as ddp_spawn does with
    # a LightningModule and the metrics created in its __init__.
    metric = CrossEntropy()
    context = mp.get_context("spawn")
    results = context.SimpleQueue()
    processes = [context.Process(target=add_rows, args=(rank, metric, results)) for rank in range(2)]
    for process in processes:
        process.start()
    counts = dict((rank, (count, shared)) for rank, count, shared in (results.get() for _ in processes))
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    assert counts == {0: (1.0, False), 1: (2.0, False)}
    assert metric.count.item() == 0


def test_state_dict_holds_copies_that_later_updates_leave_alone():
    metric = XentMetrics()
    metric.update(torch.randn(8, 3), torch.randint(0, 3, (8,)))
    saved = metric.state_dict()
    assert sorted(saved) == sorted(metric.sum_state_names)  # the options digest is not persistent
    metric.update(torch.randn(8, 3), torch.randint(0, 3, (8,)))
    assert saved["count"].item() == 8 and metric.count.item() == 16
    restored = XentMetrics()
    restored.load_state_dict(saved)
    assert restored.count.item() == 8 and restored.count.dtype == torch.float64


def test_the_bootstraps_row_counter_is_not_an_option_so_its_digest_is_made_once():
    # A digest made anew copies to the device at every update: a wait on a GPU.
    metric = BootstrapIntervals(num_replicates=4)
    metric.update(torch.randn(8, 3), torch.randint(0, 3, (8,)))
    digest = metric.options_digest
    metric.update(torch.randn(8, 3), torch.randint(0, 3, (8,)))
    assert metric.rows_seen == 16
    assert metric.options_digest is digest
