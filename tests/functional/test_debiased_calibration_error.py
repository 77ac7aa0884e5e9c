"""Debiased l2 calibration error, against the uncertainty-calibration package of Kumar, Liang & Ma."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xent_plugin.functional.adaptive_calibration_error import equal_mass_bins
from xent_plugin.functional.debiased_calibration_error import debiased_calibration_error, debiased_squared_error
from xent_plugin.functional.softmax_stats import reliability_bins

calibration = pytest.importorskip("calibration.utils")


def softmax_sample(rows: int, classes: int, temperature: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities from random logits and labels drawn at ``temperature`` (1.0 is calibrated)."""
    rng = np.random.default_rng(seed)
    logits = 2 * rng.normal(size=(rows, classes))
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    truth = np.exp(logits / temperature) / np.exp(logits / temperature).sum(axis=1, keepdims=True)
    labels = (truth.cumsum(axis=1) < rng.uniform(size=(rows, 1))).sum(axis=1).clip(max=classes - 1)
    return probs, labels


@pytest.mark.parametrize("temperature", [1.0, 1.7])
def test_equal_width_matches_the_reference_with_its_equal_width_bins(temperature):
    probs, labels = softmax_sample(5000, 6, temperature, seed=0)
    ours = debiased_calibration_error(
        torch.from_numpy(probs), torch.from_numpy(labels), input_format="probs", binning="equal_width"
    )
    reference = calibration.lower_bound_scaling_ce(
        probs, labels, p=2, debias=True, num_bins=15, binning_scheme=calibration.get_equal_prob_bins, mode="top-label"
    )
    assert float(ours) == pytest.approx(reference, abs=1e-12)


@pytest.mark.parametrize("temperature", [1.0, 1.7])
def test_equal_mass_matches_the_reference_default(temperature):
    # get_calibration_error on continuous probabilities bins 15 equal-mass bins (get_equal_bins); its default
    # mode is "marginal", so top-label needs mode="top-label".
    probs, labels = softmax_sample(5000, 6, temperature, seed=1)
    ours = debiased_calibration_error(torch.from_numpy(probs), torch.from_numpy(labels), input_format="probs")
    reference = calibration.get_calibration_error(probs, labels, p=2, debias=True, mode="top-label")
    # Near 0 the square root magnifies differences (|sqrt(a) - sqrt(b)| <= sqrt(|a - b|)), so the calibrated
    # case gets the square root of the next test's tolerance on the squared estimates.
    assert float(ours) == pytest.approx(reference, abs=np.sqrt(5e-5) if temperature == 1.0 else 1e-4)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_equal_mass_squared_estimate_matches_the_reference_pipeline(seed):
    probs, labels = softmax_sample(5000, 6, temperature=1.0, seed=seed)
    confidence, correct = probs.max(axis=1), (probs.argmax(axis=1) == labels).astype(np.float64)
    histogram = reliability_bins(torch.from_numpy(confidence), torch.from_numpy(correct), 4096)
    ours = float(debiased_squared_error(equal_mass_bins(histogram, 15)))
    # The steps of get_calibration_error(..., debias=True, mode="top-label") before its final clamp and sqrt.
    binned = calibration.bin(
        np.stack([confidence, correct], axis=1), calibration.get_equal_bins(confidence, num_bins=15)
    )
    reference = calibration.unbiased_square_ce(binned)
    # The rigorous bound, 2 x equal_mass_error_bound plus a variance term, is about 1e-2 here; the cut cells'
    # samples are near-interchangeable, and the measured gap is about 2e-5.
    assert ours == pytest.approx(reference, abs=5e-5)


def test_removes_the_upward_bias_of_the_plug_in_estimate_on_a_calibrated_model():
    squared_plug_in, squared_debiased = [], []
    for seed in range(40):
        probs, labels = softmax_sample(400, 4, temperature=1.0, seed=100 + seed)
        confidence = torch.from_numpy(probs.max(axis=1))
        correct = torch.from_numpy((probs.argmax(axis=1) == labels).astype(np.float64))
        bins = reliability_bins(confidence, correct, 10)
        count, confidence_sum, correct_sum = bins
        squared_plug_in.append(float((count * ((correct_sum - confidence_sum) / count.clamp_min(1)) ** 2).sum() / 400))
        squared_debiased.append(float(debiased_squared_error(bins)))
    # The plug-in squared error of a calibrated model is about bins * variance / N > 0; debiased is centred on 0.
    standard_error = np.std(squared_debiased) / np.sqrt(len(squared_debiased))
    assert abs(np.mean(squared_debiased)) < 3 * standard_error
    assert np.mean(squared_plug_in) > np.mean(squared_debiased) + 10 * standard_error


def test_bins_with_fewer_than_two_samples_contribute_nothing():
    bins = torch.tensor([[1.0, 4.0], [0.9, 2.0], [0.0, 2.0]], dtype=torch.float64)
    expected = 4 * ((0.5 - 0.5) ** 2 - 0.25 / 3) / 5
    assert float(debiased_squared_error(bins)) == pytest.approx(expected, abs=1e-15)


def test_value_is_zero_not_nan_when_the_squared_estimate_is_negative():
    probs, labels = softmax_sample(300, 3, temperature=1.0, seed=7)
    bins = reliability_bins(
        torch.from_numpy(probs.max(axis=1)), torch.from_numpy((probs.argmax(axis=1) == labels).astype(float)), 15
    )
    value = debiased_calibration_error(
        torch.from_numpy(probs), torch.from_numpy(labels), input_format="probs", binning="equal_width"
    )
    assert float(value) == pytest.approx(max(float(debiased_squared_error(bins)), 0.0) ** 0.5, abs=1e-15)


def test_rejects_an_unknown_binning():
    with pytest.raises(ValueError, match="`binning` must be one of"):
        debiased_calibration_error(torch.zeros(2, 3), torch.tensor([0, 1]), binning="quantile")
