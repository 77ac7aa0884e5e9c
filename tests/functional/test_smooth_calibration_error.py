"""Smooth ECE from the fine histogram, against the definition evaluated sample by sample and against relplot."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from xent_plugin.functional.smooth_calibration_error import (
    _smooth_calibration_error_compute,
    smooth_calibration_bandwidth,
    smooth_calibration_error,
    smooth_calibration_error_at,
    smooth_reliability_curve,
)
from xent_plugin.functional.softmax_stats import reliability_bins

relplot = pytest.importorskip("relplot")


def sample(kind: str, rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Confidences and 0/1 outcomes whose miscalibration changes sign along the confidence axis."""
    rng = np.random.default_rng(seed)
    if kind == "interior":  # nothing near 0 or 1
        confidence = rng.uniform(0.2, 0.9, rows)
    elif kind == "skewed":
        confidence = rng.beta(5, 1.5, rows)
    else:  # "peaked": a sixth of the samples within 1/4096 of 1, like a trained network's top label
        confidence = 1 - 0.5 * rng.beta(0.3, 3, rows)
    truth = np.clip(confidence + 0.15 * np.sin(8 * confidence), 0, 1)
    return confidence, (rng.uniform(size=rows) < truth).astype(np.float64)


def histogram_of(confidence: np.ndarray, correct: np.ndarray) -> torch.Tensor:
    return reliability_bins(torch.from_numpy(confidence), torch.from_numpy(correct), 4096)


def definition(confidence: np.ndarray, correct: np.ndarray, sigma: float, nodes: int = 2000) -> float:
    """(1/N) int_0^1 |sum_i K(t, c_i) (c_i - a_i)| dt with the reflected kernel, sample by sample (midpoint rule)."""
    t = (np.arange(nodes) + 0.5) / nodes
    residual = confidence - correct
    total = np.zeros(nodes)
    for k in (-1, 0, 1):  # further images are 20 bandwidths away for sigma <= 0.1
        for image in (confidence - 2 * k, -confidence - 2 * k):
            total += np.exp(-0.5 * ((t[:, None] - image) / sigma) ** 2) @ residual
    return np.abs(total).sum() / (sigma * math.sqrt(2 * math.pi)) / nodes / len(confidence)


@pytest.mark.parametrize("kind", ["interior", "skewed", "peaked"])
@pytest.mark.parametrize("sigma", [0.01, 0.05])
def test_fixed_bandwidth_matches_the_definition_sample_by_sample(kind, sigma):
    confidence, correct = sample(kind, 1000, seed=0)
    ours = float(smooth_calibration_error_at(histogram_of(confidence, correct), sigma))
    # Placing each cell's samples at the cell mean moves them by at most 1/4096; measured <= 2e-4 relative.
    assert ours == pytest.approx(definition(confidence, correct, sigma), rel=1e-3)


@pytest.mark.parametrize("sigma", [0.01, 0.03, 0.1])
def test_fixed_bandwidth_matches_relplot_away_from_the_ends(sigma):
    confidence, correct = sample("interior", 20_000, seed=1)
    ours = float(smooth_calibration_error_at(histogram_of(confidence, correct), sigma))
    assert ours == pytest.approx(relplot.smECE_sigma(confidence, correct, sigma), rel=1e-3)


def test_automatic_bandwidth_and_value_match_relplot_away_from_the_ends():
    confidence, correct = sample("interior", 20_000, seed=1)
    value, width = relplot.smECE(confidence, correct, return_width=True)
    ours, bandwidth = _smooth_calibration_error_compute(histogram_of(confidence, correct))
    # relplot bisects 10 times on [0, 1]: its width is within 2^-10 above the fixed point.
    assert float(bandwidth) == pytest.approx(width, abs=2**-10 + 1e-4)
    assert float(ours) == pytest.approx(value, rel=1e-3)


def test_relplot_gives_samples_at_the_ends_half_weight_and_we_do_not():
    # relplot mirrors its grid about the end nodes, so a mass at exactly 1 is smoothed once, not twice. With a
    # sixth of the samples in the last cell its value is ~8 % off the definition; ours stays on it.
    confidence, correct = sample("peaked", 1000, seed=2)
    exact = definition(confidence, correct, 0.02)
    assert float(smooth_calibration_error_at(histogram_of(confidence, correct), 0.02)) == pytest.approx(exact, rel=1e-3)
    assert abs(relplot.smECE_sigma(confidence, correct, 0.02) / exact - 1) > 0.03


def test_bandwidth_is_the_fixed_point_of_smooth_ece():
    confidence, correct = sample("skewed", 5000, seed=3)
    histogram = histogram_of(confidence, correct)
    sigma = smooth_calibration_bandwidth(histogram, tolerance=1e-5)
    assert float(smooth_calibration_error_at(histogram, sigma)) <= sigma
    assert float(smooth_calibration_error_at(histogram, sigma - 1e-5)) > sigma - 1e-5


def test_one_signed_miscalibration_gives_the_mean_residual_at_any_bandwidth():
    # When every smoothed residual has one sign, |sum K r| = sum K r and the integral is the mean residual.
    rng = np.random.default_rng(4)
    confidence = rng.uniform(0.3, 1.0, 4000)
    correct = (rng.uniform(size=4000) < confidence**3).astype(np.float64)
    histogram = histogram_of(confidence, correct)
    for sigma in (0.02, 0.2, 0.9):
        assert float(smooth_calibration_error_at(histogram, sigma)) == pytest.approx(
            (confidence - correct).mean(), rel=1e-9
        )


def test_calibrated_predictions_have_a_small_smooth_ece():
    rng = np.random.default_rng(5)
    confidence = rng.uniform(0, 1, 50_000)
    correct = (rng.uniform(size=50_000) < confidence).astype(np.float64)
    assert float(_smooth_calibration_error_compute(histogram_of(confidence, correct))[0]) < 0.01


def test_curve_matches_relplot_kernel_smoother_away_from_the_ends():
    confidence, correct = sample("interior", 20_000, seed=6)
    curve = smooth_reliability_curve(histogram_of(confidence, correct), bandwidth=0.05, points=101)
    t = curve["confidence"].numpy()
    inside = (t > 0.3) & (t < 0.8)
    smoothed_gap, _ = relplot.kernels.ReflectedGaussianKernel(0.05).smooth(confidence, correct - confidence, t)
    np.testing.assert_allclose(curve["accuracy"].numpy()[inside], (t + smoothed_gap)[inside], atol=1e-3)


def test_band_narrows_like_one_over_root_n_and_holds_the_curve():
    confidence, correct = sample("interior", 40_000, seed=7)
    small = smooth_reliability_curve(histogram_of(confidence[:10_000], correct[:10_000]), bandwidth=0.05, points=51)
    large = smooth_reliability_curve(histogram_of(confidence, correct), bandwidth=0.05, points=51)
    middle = 25
    ratio = (small["upper"] - small["lower"])[middle] / (large["upper"] - large["lower"])[middle]
    assert float(ratio) == pytest.approx(2.0, rel=0.05)
    assert bool((large["lower"][10:40] <= large["accuracy"][10:40]).all())
    assert bool((large["accuracy"][10:40] <= large["upper"][10:40]).all())


def test_curve_density_integrates_to_one():
    confidence, correct = sample("skewed", 5000, seed=8)
    curve = smooth_reliability_curve(histogram_of(confidence, correct), points=501)
    assert float(torch.trapezoid(curve["density"], curve["confidence"])) == pytest.approx(1.0, abs=2e-3)


def test_multiclass_logits_use_the_top_label_confidence():
    generator = torch.Generator().manual_seed(9)
    logits = 2 * torch.randn(3000, 5, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, 5, (3000,), generator=generator)
    confidence, prediction = logits.softmax(dim=1).max(dim=1)
    correct = (prediction == labels).double()
    reference = smooth_calibration_error_at(reliability_bins(confidence, correct, 4096), 0.05)
    assert float(smooth_calibration_error(logits, labels, bandwidth=0.05)) == pytest.approx(float(reference))


def test_empty_histogram_gives_nan_with_a_warning():
    with pytest.warns(UserWarning, match="no samples"):
        value, _ = _smooth_calibration_error_compute(torch.zeros(3, 4096, dtype=torch.float64))
    assert value.isnan()
