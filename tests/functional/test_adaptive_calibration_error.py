"""Equal-mass calibration error from the fine histogram, against exact equal-mass binning of the samples."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xent_plugin.functional.adaptive_calibration_error import (
    adaptive_calibration_error,
    equal_mass_bins,
    equal_mass_error_bound,
    equal_mass_reliability_table,
)
from xent_plugin.functional.calibration_error import _calibration_error_compute
from xent_plugin.functional.softmax_stats import reliability_bins


def exact_equal_mass(confidence: np.ndarray, correct: np.ndarray, n_bins: int, norm: str = "l1") -> float:
    """Sort, cut with np.array_split's sizes, and average the gaps: the estimator the histogram approximates."""
    groups = [g for g in np.array_split(np.argsort(confidence, kind="stable"), n_bins) if len(g)]
    gaps = np.array([abs(correct[g].mean() - confidence[g].mean()) for g in groups])
    weights = np.array([len(g) for g in groups]) / len(confidence)
    if norm == "l1":
        return float(weights @ gaps)
    if norm == "l2":
        return float(np.sqrt(weights @ gaps**2))
    return float(gaps.max())


def miscalibrated_sample(kind: str, rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    if kind == "uniform":
        confidence = rng.uniform(0.2, 1.0, rows)
    elif kind == "skewed":
        confidence = rng.beta(5, 1.5, rows)
    else:  # "peaked": a trained network's top-label confidences, a sixth of them within 1/4096 of 1
        confidence = 1 - 0.5 * rng.beta(0.3, 3, rows)
    truth = np.clip(confidence + 0.15 * np.sin(8 * confidence), 0, 1)
    return confidence, (rng.uniform(size=rows) < truth).astype(np.float64)


def histogram_of(confidence: np.ndarray, correct: np.ndarray, n_cells: int = 4096) -> torch.Tensor:
    return reliability_bins(torch.from_numpy(confidence), torch.from_numpy(correct), n_cells)


@pytest.mark.parametrize("rows,n_bins", [(1000, 15), (1007, 15), (10, 15), (4096, 7), (3, 3)])
def test_bins_have_the_sizes_of_array_split(rows, n_bins):
    confidence, correct = miscalibrated_sample("uniform", rows, seed=rows)
    counts = equal_mass_bins(histogram_of(confidence, correct), n_bins)[0]
    expected = [len(g) for g in np.array_split(np.arange(rows), n_bins)]
    np.testing.assert_allclose(counts.numpy(), expected, atol=1e-9)


@pytest.mark.parametrize("kind", ["uniform", "skewed", "peaked"])
@pytest.mark.parametrize("norm", ["l1", "l2", "max"])
def test_matches_exact_equal_mass_binning_within_the_bound(kind, norm):
    confidence, correct = miscalibrated_sample(kind, 20_000, seed=1)
    histogram = histogram_of(confidence, correct)
    approximate = float(_calibration_error_compute(equal_mass_bins(histogram, 15), norm))
    bound = float(equal_mass_error_bound(histogram, 15, norm))
    assert abs(approximate - exact_equal_mass(confidence, correct, 15, norm)) <= bound


@pytest.mark.parametrize("kind", ["uniform", "skewed", "peaked"])
def test_bound_is_small_at_twenty_thousand_samples(kind):
    confidence, correct = miscalibrated_sample(kind, 20_000, seed=2)
    assert float(equal_mass_error_bound(histogram_of(confidence, correct), 15)) < 0.006


def test_is_exact_when_every_boundary_falls_between_cells():
    # One sample per cell: no cell is ever cut, so the bound is 0 and the value exact.
    rng = np.random.default_rng(3)
    cells = rng.choice(4096, size=300, replace=False)
    confidence = (cells + 0.5) / 4096
    correct = (rng.uniform(size=300) < confidence**2).astype(np.float64)
    histogram = histogram_of(confidence, correct)
    assert float(equal_mass_error_bound(histogram, 15)) == 0
    approximate = float(_calibration_error_compute(equal_mass_bins(histogram, 15)))
    assert approximate == pytest.approx(exact_equal_mass(confidence, correct, 15), abs=1e-12)


def two_sided_softmax_sample(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Softmax outputs that are underconfident below 0.5 confidence and overconfident above, so the gaps of
    neighbouring bins differ in sign (with one sign throughout, ECE = |mean residual| for every binning)."""
    rng = np.random.default_rng(seed)
    logits = 2.5 * rng.normal(size=(rows, 10))
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    sharpness = np.where(probs.max(axis=1, keepdims=True) < 0.5, 1.5, 0.5)
    truth = np.exp(sharpness * logits) / np.exp(sharpness * logits).sum(axis=1, keepdims=True)
    labels = (truth.cumsum(axis=1) < rng.uniform(size=(rows, 1))).sum(axis=1).clip(max=9)
    return probs, labels


def test_agrees_with_netcal_equal_mass_ece_up_to_its_quantile_boundaries():
    netcal = pytest.importorskip("netcal.metrics")
    probs, labels = two_sided_softmax_sample(5000, seed=4)
    ours = adaptive_calibration_error(torch.from_numpy(probs), torch.from_numpy(labels), input_format="probs")
    reference, _, counts = netcal.ECE(bins=15, equal_intervals=False).measure(
        probs, labels, return_map=True, return_num_samples=True
    )
    # netcal cuts at np.quantile values, so its bins can hold a few samples more or less than array_split's;
    # each sample that changes bins moves the ECE by at most 1/N.
    expected = [len(g) for g in np.array_split(np.arange(5000), 15)]
    moved = np.abs(np.cumsum(counts) - np.cumsum(expected)).sum()
    histogram = histogram_of(probs.max(axis=1), (probs.argmax(axis=1) == labels).astype(np.float64))
    tolerance = float(equal_mass_error_bound(histogram, 15)) + 2 * moved / 5000
    assert float(ours) == pytest.approx(reference, abs=tolerance)


def test_agrees_with_uncertainty_calibration_equal_mass_ece():
    calibration = pytest.importorskip("calibration")
    probs, labels = two_sided_softmax_sample(5000, seed=5)
    ours = adaptive_calibration_error(torch.from_numpy(probs), torch.from_numpy(labels), input_format="probs")
    histogram = histogram_of(probs.max(axis=1), (probs.argmax(axis=1) == labels).astype(np.float64))
    bound = float(equal_mass_error_bound(histogram, 15))
    assert float(ours) == pytest.approx(calibration.get_ece_em(probs, labels, num_bins=15), abs=bound)


def test_reliability_table_edges_bracket_each_bins_samples_to_within_a_cell():
    confidence, correct = miscalibrated_sample("skewed", 3000, seed=6)
    table = equal_mass_reliability_table(histogram_of(confidence, correct), 10)
    groups = np.array_split(np.sort(confidence), 10)
    cell = 1 / 4096
    for m, group in enumerate(groups):
        assert table["lower"][m] <= group[0] + cell and table["upper"][m] >= group[-1] - cell
        assert table["confidence"][m] == pytest.approx(group.mean(), abs=cell)
    assert bool((table["lower"][1:] >= table["upper"][:-1] - cell).all())


def test_labels_of_a_multilabel_histogram_are_binned_independently():
    first, second = miscalibrated_sample("uniform", 500, 7), miscalibrated_sample("skewed", 500, 8)
    stacked = torch.stack([histogram_of(*first), histogram_of(*second)], dim=1)
    together = equal_mass_bins(stacked, 15)
    torch.testing.assert_close(together[:, 0], equal_mass_bins(histogram_of(*first), 15))
    torch.testing.assert_close(together[:, 1], equal_mass_bins(histogram_of(*second), 15))


def test_binary_task_uses_the_top_label_confidence():
    probs = torch.tensor([0.9, 0.2, 0.6, 0.4], dtype=torch.float64)
    labels = torch.tensor([1, 0, 0, 0])
    value = adaptive_calibration_error(probs, labels, task="binary", input_format="probs", n_bins=2)
    confidence = np.array([0.9, 0.8, 0.6, 0.6])
    correct = np.array([1.0, 1.0, 0.0, 1.0])
    assert float(value) == pytest.approx(exact_equal_mass(confidence, correct, 2), abs=1e-12)


def test_empty_histogram_gives_nan_with_a_warning():
    with pytest.warns(UserWarning, match="no samples"):
        value = _calibration_error_compute(equal_mass_bins(torch.zeros(3, 4096, dtype=torch.float64), 15))
    assert value.isnan()
