"""CalibrationError: streaming ECE/RMSCE/MCE from a fixed (3, n_bins) histogram, against torchmetrics."""

from __future__ import annotations

import pytest
import torch
from torchmetrics.classification import BinaryCalibrationError, MulticlassCalibrationError

from xent_plugin.functional import calibration_error, reliability_table, sufficient_stats
from xent_plugin.metrics import CalibrationError

from ._metric_cases import binary_prob_batch, multiclass_batch, multilabel_batch

NORMS = ["l1", "l2", "max"]
BATCH_ROWS = [64, 17, 90, 33]


def _feed(metrics, batches) -> None:
    for batch in batches:
        for metric in metrics:
            metric.update(*batch)


@pytest.mark.parametrize("norm", NORMS)
def test_multiclass_streaming_matches_torchmetrics(norm):
    batches = [multiclass_batch(rows, seed) for seed, rows in enumerate(BATCH_ROWS)]
    ours = CalibrationError(n_bins=10, norm=norm)
    theirs = MulticlassCalibrationError(num_classes=5, n_bins=10, norm=norm)
    _feed([ours, theirs], batches)
    assert ours.compute().item() == pytest.approx(theirs.compute().item(), abs=1e-6)


@pytest.mark.parametrize("norm", NORMS)
def test_multiclass_ignore_index_matches_torchmetrics(norm):
    batches = []
    for seed, rows in enumerate(BATCH_ROWS):
        logits, labels = multiclass_batch(rows, seed)
        labels[::3] = -1
        batches.append((logits, labels))
    ours = CalibrationError(norm=norm, ignore_index=-1)
    theirs = MulticlassCalibrationError(num_classes=5, norm=norm, ignore_index=-1)
    _feed([ours, theirs], batches)
    assert ours.compute().item() == pytest.approx(theirs.compute().item(), abs=1e-6)


@pytest.mark.parametrize("norm", NORMS)
def test_binary_positive_mode_matches_torchmetrics_binary(norm):
    batches = [binary_prob_batch(rows, seed) for seed, rows in enumerate(BATCH_ROWS)]
    ours = CalibrationError(task="binary", input_format="probs", calibration_mode="positive", norm=norm)
    theirs = BinaryCalibrationError(norm=norm)
    _feed([ours, theirs], batches)
    assert ours.compute().item() == pytest.approx(theirs.compute().item(), abs=1e-6)


@pytest.mark.parametrize("norm", NORMS)
def test_binary_top_label_mode_matches_torchmetrics_multiclass_on_both_classes(norm):
    batches = [binary_prob_batch(rows, seed) for seed, rows in enumerate(BATCH_ROWS)]
    ours = CalibrationError(task="binary", input_format="probs", norm=norm)
    theirs = MulticlassCalibrationError(num_classes=2, norm=norm)
    for probs, labels in batches:
        ours.update(probs, labels)
        theirs.update(torch.stack([1 - probs, probs], dim=1), labels)
    assert ours.compute().item() == pytest.approx(theirs.compute().item(), abs=1e-6)


def test_multilabel_per_label_values_match_torchmetrics_binary_per_column():
    batches = [multilabel_batch(rows, seed) for seed, rows in enumerate(BATCH_ROWS)]
    ours = CalibrationError(task="multilabel", num_labels=3, calibration_mode="positive", average="none")
    theirs = [BinaryCalibrationError() for _ in range(3)]
    for logits, labels in batches:
        ours.update(logits, labels)
        for j, metric in enumerate(theirs):
            metric.update(logits[:, j].sigmoid().contiguous(), labels[:, j].contiguous())
    expected = torch.stack([metric.compute() for metric in theirs]).double()
    torch.testing.assert_close(ours.compute(), expected, atol=1e-6, rtol=0)


def test_confidence_of_exactly_one_is_counted_in_the_last_bin():
    metric = CalibrationError(input_format="probs", n_bins=10)
    metric.update(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 0]))
    metric.update(torch.tensor([[0.3, 0.7]]), torch.tensor([1]))
    table = metric.reliability_table()
    assert table["count"].tolist() == [0, 0, 0, 0, 0, 0, 0, 1, 0, 2]
    assert table["accuracy"][-1].item() == 0.5
    assert table["confidence"][-1].item() == 1.0
    assert metric.compute().item() == pytest.approx((2 * 0.5 + 1 * 0.3) / 3)


def test_reliability_table_after_streaming_equals_the_one_shot_table():
    batches = [multiclass_batch(rows, seed) for seed, rows in enumerate(BATCH_ROWS)]
    metric = CalibrationError(n_bins=15)
    _feed([metric], batches)
    logits = torch.cat([b[0] for b in batches])
    labels = torch.cat([b[1] for b in batches])
    expected = reliability_table(sufficient_stats(logits, labels, n_bins=15).bins)
    table = metric.reliability_table()
    assert table["count"].sum().item() == sum(BATCH_ROWS)
    for key in expected:
        torch.testing.assert_close(table[key], expected[key], equal_nan=True, rtol=1e-12, atol=1e-15)


def test_multilabel_reliability_table_has_a_row_per_label():
    metric = CalibrationError(task="multilabel", num_labels=3, n_bins=6)
    metric.update(*multilabel_batch(40, 0))
    table = metric.reliability_table()
    assert table["count"].shape == (3, 6)
    assert table["lower"].shape == (3, 6)
    assert table["count"].sum(dim=1).tolist() == [40.0, 40.0, 40.0]


def test_streaming_equals_the_functional_value_on_all_the_data():
    batches = [multiclass_batch(rows, seed) for seed, rows in enumerate(BATCH_ROWS)]
    metric = CalibrationError(norm="l2", n_bins=7)
    _feed([metric], batches)
    logits = torch.cat([b[0] for b in batches])
    labels = torch.cat([b[1] for b in batches])
    expected = calibration_error(logits, labels, norm="l2", n_bins=7)
    assert metric.compute().item() == pytest.approx(expected.item(), rel=1e-12)


def test_state_is_the_histogram_of_three_rows_by_n_bins():
    assert CalibrationError(n_bins=20).bins.shape == (3, 20)
    assert CalibrationError(task="multilabel", num_labels=4, n_bins=5).bins.shape == (3, 4, 5)
