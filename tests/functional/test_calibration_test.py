"""Calibration test and l2 interval, against numpy and scipy computed sample by sample."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from xent_plugin.functional.calibration_test import (
    _calibration_test_compute,
    calibration_residual_bins,
    calibration_test,
    merged_groups,
    residual_bins,
)
from xent_plugin.functional.softmax_stats import bin_index


def beta_sample(rows: int, power: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Confidence 0.1 + 0.9 Beta(5, 1) and correctness drawn with probability confidence ** power."""
    rng = np.random.default_rng(seed)
    confidence = 0.1 + 0.9 * rng.beta(5, 1, rows)
    return confidence, (rng.random(rows) < confidence**power).astype(np.float64)


def test_bins_hold_count_residual_sums_and_null_variance():
    confidence, correct = beta_sample(500, 1.5, seed=0)
    bins = residual_bins(torch.from_numpy(confidence), torch.from_numpy(correct), n_bins=7).numpy()
    index = bin_index(torch.from_numpy(confidence), 7).numpy()
    residual = correct - confidence
    for b in range(7):
        inside = index == b
        expected = [inside.sum(), residual[inside].sum(), (residual[inside] ** 2).sum()]
        expected.append((confidence[inside] * (1 - confidence[inside])).sum())
        np.testing.assert_allclose(bins[:, b], expected, rtol=1e-12, atol=1e-12)


def test_statistic_and_p_value_match_a_chi_square_computed_by_hand():
    confidence, correct = beta_sample(2000, 1.0, seed=1)
    bins = residual_bins(torch.from_numpy(confidence), torch.from_numpy(correct))
    result = _calibration_test_compute(bins, min_variance=5.0)
    groups = merged_groups(bins[3], 5.0).numpy()
    index = groups[bin_index(torch.from_numpy(confidence), 15).numpy()]
    residual, variance = correct - confidence, confidence * (1 - confidence)
    statistic = sum(residual[index == g].sum() ** 2 / variance[index == g].sum() for g in np.unique(index))
    assert float(result["statistic"]) == pytest.approx(statistic, rel=1e-10)
    assert float(result["degrees_of_freedom"]) == len(np.unique(index))
    assert float(result["p_value"]) == pytest.approx(stats.chi2.sf(statistic, len(np.unique(index))), rel=1e-8)


def test_every_merged_group_reaches_the_minimum_variance():
    variance = torch.tensor([0.5, 0.1, 3.0, 9.0, 0.2, 4.9, 0.05, 1.0], dtype=torch.float64)
    groups = merged_groups(variance, 5.0)
    totals = torch.zeros(int(groups.max()) + 1, dtype=torch.float64).index_add_(0, groups, variance)
    assert bool((groups.diff() >= 0).all()) and bool((totals >= 5.0).all())
    assert totals.sum().item() == pytest.approx(variance.sum().item())


def test_l2_estimate_is_the_u_statistic_of_each_bin():
    confidence, correct = beta_sample(300, 2.0, seed=2)
    bins = residual_bins(torch.from_numpy(confidence), torch.from_numpy(correct), n_bins=5)
    index = bin_index(torch.from_numpy(confidence), 5).numpy()
    residual = correct - confidence
    squared = 0.0
    for b in range(5):
        r = residual[index == b]
        if len(r) >= 2:
            pairs = np.outer(r, r)
            squared += (pairs.sum() - np.trace(pairs)) / (len(r) - 1)
    squared /= len(residual)
    result = _calibration_test_compute(bins)
    assert float(result["l2"]) == pytest.approx(np.sqrt(max(squared, 0)), rel=1e-10)
    assert float(result["l2_lower"]) <= float(result["l2"]) <= float(result["l2_upper"])


def test_interval_widens_with_the_confidence_level():
    confidence, correct = beta_sample(3000, 2.0, seed=3)
    bins = residual_bins(torch.from_numpy(confidence), torch.from_numpy(correct))
    narrow, wide = _calibration_test_compute(bins, 0.8), _calibration_test_compute(bins, 0.99)
    assert float(wide["l2_lower"]) < float(narrow["l2_lower"]) < float(narrow["l2_upper"]) < float(wide["l2_upper"])


def test_multiclass_bins_use_top_label_confidence_and_skip_ignored_rows():
    generator = torch.Generator().manual_seed(4)
    logits = torch.randn(400, 6, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, 6, (400,), generator=generator)
    labels[::3] = -100
    bins = calibration_residual_bins(logits, labels, ignore_index=-100)
    kept = labels != -100
    probs = logits[kept].softmax(dim=1)
    confidence, top = probs.max(dim=1)
    expected = residual_bins(confidence, (top == labels[kept]).double())
    torch.testing.assert_close(bins, expected, rtol=1e-12, atol=1e-12)


def test_no_samples_give_nan_with_a_warning():
    with pytest.warns(UserWarning, match="no samples"):
        result = _calibration_test_compute(torch.zeros(4, 15, dtype=torch.float64))
    assert all(bool(value.isnan()) for value in result.values())


@pytest.mark.parametrize("argument", [{"confidence_level": 1.5}, {"min_variance": 0}, {"n_bins": 0}])
def test_rejects_bad_arguments(argument):
    with pytest.raises(ValueError, match=f"`{next(iter(argument))}` must be"):
        calibration_test(torch.zeros(2, 3), torch.tensor([0, 1]), **argument)
