"""entropy: the mean predictive entropy H(q) = -sum_c q_c log q_c, checked against scipy.stats.entropy."""

from __future__ import annotations

import math

import pytest
import scipy.stats
import torch

from xent_plugin.functional import entropy


def _logits(seed: int, rows: int = 150, classes: int = 7) -> torch.Tensor:
    return 3 * torch.randn(rows, classes, generator=torch.Generator().manual_seed(seed))


def _scipy_mean_entropy(probs: torch.Tensor, axis: int = 1) -> float:
    return float(scipy.stats.entropy(probs.double().numpy(), axis=axis).mean())


def test_logits_match_scipy_entropy_of_their_softmax():
    logits = _logits(0)
    expected = _scipy_mean_entropy(logits.double().softmax(dim=1))
    assert entropy(logits).item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("input_format", ["probs", "log_probs"])
def test_probability_and_log_probability_inputs_match_scipy(input_format):
    log_probs = _logits(1).double().log_softmax(dim=1)
    preds = log_probs.exp() if input_format == "probs" else log_probs
    expected = _scipy_mean_entropy(log_probs.exp())
    assert entropy(preds, input_format=input_format).item() == pytest.approx(expected, rel=1e-12)


def test_class_dim_last_matches_scipy_over_the_last_axis():
    logits = torch.randn(3, 5, 11, generator=torch.Generator().manual_seed(2))
    expected = _scipy_mean_entropy(logits.double().softmax(dim=-1), axis=-1)
    assert entropy(logits, class_dim=-1).item() == pytest.approx(expected, rel=1e-6)


def test_masked_classes_contribute_zero():
    logits = _logits(3, classes=6)
    masked = logits.clone()
    masked[:, 4:] = float("-inf")
    expected = _scipy_mean_entropy(logits[:, :4].double().softmax(dim=1))
    assert entropy(masked).item() == pytest.approx(expected, rel=1e-6)


def test_zero_probabilities_follow_zero_log_zero():
    probs = torch.tensor([[0.5, 0.0, 0.5], [1.0, 0.0, 0.0]], dtype=torch.float64)
    assert entropy(probs, input_format="probs").item() == pytest.approx(math.log(2) / 2, rel=1e-12)


def test_uniform_distribution_has_entropy_log_of_the_class_count():
    assert entropy(torch.zeros(4, 9)).item() == pytest.approx(math.log(9), rel=1e-6)
