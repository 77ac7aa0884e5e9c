"""calibration_error and reliability_table: equal-width top-label bins, against torchmetrics and numpy.

torchmetrics puts a confidence of exactly 1.0 in a hidden extra bin (its ``bucketize(..., right=True)``), so
the comparisons keep every confidence below 1; a separate test pins down that ours counts 1.0 in the last bin.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchmetrics.functional.classification import binary_calibration_error, multiclass_calibration_error

from xent_plugin.functional import calibration_error, reliability_bins, reliability_table, sufficient_stats

NORMS = ["l1", "l2", "max"]


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _multiclass(seed: int, rows: int = 500, classes: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    g = _generator(seed)
    logits = 2 * torch.randn(rows, classes, generator=g, dtype=torch.float64)
    return logits, torch.randint(0, classes, (rows,), generator=g)


def _binary(seed: int, shape: tuple[int, ...] = (500,)) -> tuple[torch.Tensor, torch.Tensor]:
    g = _generator(seed)
    probs = torch.rand(shape, generator=g, dtype=torch.float64) * 0.999
    # Labels that follow the probabilities loosely, so the bins hold a mix of right and wrong.
    labels = (torch.rand(shape, generator=g, dtype=torch.float64) < probs**0.7).long()
    return probs, labels


def _numpy_reliability_table(confidence: np.ndarray, correct: np.ndarray, n_bins: int) -> dict[str, np.ndarray]:
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # Bin k is [edge_k, edge_k+1); the last bin also holds 1.0.
    index = np.clip(np.searchsorted(edges, confidence, side="right") - 1, 0, n_bins - 1)
    count = np.bincount(index, minlength=n_bins).astype(float)
    with np.errstate(invalid="ignore"):
        mean_confidence = np.bincount(index, weights=confidence, minlength=n_bins) / count
        accuracy = np.bincount(index, weights=correct, minlength=n_bins) / count
    return {
        "lower": edges[:-1],
        "upper": edges[1:],
        "count": count,
        "confidence": mean_confidence,
        "accuracy": accuracy,
    }


@pytest.mark.parametrize("norm", NORMS)
def test_multiclass_matches_torchmetrics(norm):
    logits, labels = _multiclass(0)
    expected = multiclass_calibration_error(logits.softmax(dim=1), labels, num_classes=5, n_bins=10, norm=norm)
    actual = calibration_error(logits, labels, n_bins=10, norm=norm)
    assert actual.item() == pytest.approx(expected.item(), abs=1e-6)


@pytest.mark.parametrize("norm", NORMS)
def test_multiclass_ignore_index_matches_torchmetrics(norm):
    logits, labels = _multiclass(1)
    labels[::3] = -100
    expected = multiclass_calibration_error(
        logits.softmax(dim=1), labels, num_classes=5, n_bins=15, norm=norm, ignore_index=-100
    )
    actual = calibration_error(logits, labels, norm=norm, ignore_index=-100)
    assert actual.item() == pytest.approx(expected.item(), abs=1e-6)


@pytest.mark.parametrize("norm", NORMS)
def test_binary_positive_mode_matches_torchmetrics_binary(norm):
    probs, labels = _binary(2)
    expected = binary_calibration_error(probs, labels, n_bins=10, norm=norm)
    actual = calibration_error(
        probs, labels, task="binary", input_format="probs", n_bins=10, norm=norm, calibration_mode="positive"
    )
    assert actual.item() == pytest.approx(expected.item(), abs=1e-6)


@pytest.mark.parametrize("norm", NORMS)
def test_binary_top_label_mode_matches_torchmetrics_multiclass_on_both_classes(norm):
    probs, labels = _binary(3)
    two_class = torch.stack([1 - probs, probs], dim=1)
    expected = multiclass_calibration_error(two_class, labels, num_classes=2, n_bins=10, norm=norm)
    actual = calibration_error(probs, labels, task="binary", input_format="probs", n_bins=10, norm=norm)
    assert actual.item() == pytest.approx(expected.item(), abs=1e-6)


def test_binary_logits_match_probabilities_after_sigmoid():
    g = _generator(4)
    logits = 2 * torch.randn(300, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 2, (300,), generator=g)
    expected = binary_calibration_error(logits.sigmoid(), labels, n_bins=8)
    actual = calibration_error(logits, labels, task="binary", n_bins=8, calibration_mode="positive")
    assert actual.item() == pytest.approx(expected.item(), abs=1e-6)


@pytest.mark.parametrize("norm", NORMS)
def test_multilabel_positive_mode_is_torchmetrics_binary_per_label(norm):
    probs, labels = _binary(5, shape=(400, 3))
    expected = torch.stack(
        [binary_calibration_error(probs[:, j].contiguous(), labels[:, j].contiguous(), norm=norm) for j in range(3)]
    )
    actual = calibration_error(
        probs, labels, task="multilabel", input_format="probs", norm=norm, calibration_mode="positive", average="none"
    )
    torch.testing.assert_close(actual, expected.double(), atol=1e-6, rtol=0)


def test_multilabel_top_label_mode_is_torchmetrics_multiclass_per_label():
    probs, labels = _binary(6, shape=(400, 3))
    expected = torch.stack(
        [
            multiclass_calibration_error(
                torch.stack([1 - probs[:, j], probs[:, j]], dim=1), labels[:, j].contiguous(), 2
            )
            for j in range(3)
        ]
    )
    actual = calibration_error(probs, labels, task="multilabel", input_format="probs", average="none")
    torch.testing.assert_close(actual, expected.double(), atol=1e-6, rtol=0)


def test_multilabel_macro_average_is_the_mean_over_labels():
    probs, labels = _binary(7, shape=(200, 4))
    kwargs = {"task": "multilabel", "input_format": "probs"}
    per_label = calibration_error(probs, labels, average="none", **kwargs)
    assert calibration_error(probs, labels, **kwargs).item() == pytest.approx(per_label.mean().item(), rel=1e-12)


def test_confidence_of_exactly_one_is_counted_in_the_last_bin():
    probs = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.2, 0.3, 0.5]])
    stats = sufficient_stats(probs, torch.tensor([0, 1, 2]), input_format="probs", n_bins=10)
    table = reliability_table(stats.bins)
    assert table["count"].tolist() == [0, 0, 0, 0, 0, 1, 0, 0, 0, 2]
    assert table["confidence"][-1].item() == 1.0
    assert table["accuracy"][-1].item() == 1.0


def test_certain_and_right_predictions_have_zero_calibration_error():
    probs = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert calibration_error(probs, torch.tensor([0, 1]), input_format="probs").item() == 0.0


def test_confidence_on_an_inner_edge_falls_in_the_upper_bin():
    confidence = torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64)
    table = reliability_table(reliability_bins(confidence, torch.ones(3, dtype=torch.float64), n_bins=4))
    assert table["count"].tolist() == [0, 1, 1, 1]


def test_reliability_table_matches_numpy_reference():
    g = _generator(8)
    confidence = torch.rand(1000, generator=g, dtype=torch.float64) ** 0.3
    correct = (torch.rand(1000, generator=g, dtype=torch.float64) < confidence).double()
    expected = _numpy_reliability_table(confidence.numpy(), correct.numpy(), n_bins=12)
    table = reliability_table(reliability_bins(confidence, correct, n_bins=12))
    for key, values in expected.items():
        np.testing.assert_allclose(table[key].numpy(), values, rtol=1e-12, atol=0, equal_nan=True, err_msg=key)


def test_reliability_table_of_the_softmax_pass_matches_numpy_on_top_label_confidence():
    logits, labels = _multiclass(9)
    probs = logits.softmax(dim=1)
    confidence, prediction = probs.max(dim=1)
    expected = _numpy_reliability_table(confidence.numpy(), (prediction == labels).double().numpy(), n_bins=15)
    table = reliability_table(sufficient_stats(logits, labels, n_bins=15).bins)
    for key, values in expected.items():
        np.testing.assert_allclose(table[key].numpy(), values, rtol=1e-10, atol=0, equal_nan=True, err_msg=key)


def test_reliability_table_marks_empty_bins_with_nan():
    table = reliability_table(reliability_bins(torch.tensor([0.05, 0.95]), torch.tensor([0.0, 1.0]), n_bins=5))
    assert table["count"].tolist() == [1, 0, 0, 0, 1]
    assert torch.isnan(table["confidence"][1:4]).all() and torch.isnan(table["accuracy"][1:4]).all()
    assert not torch.isnan(table["confidence"][[0, 4]]).any()
