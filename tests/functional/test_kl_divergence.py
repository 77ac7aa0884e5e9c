"""kl_divergence: KL(p || q) of the reference `target` p from the model `preds` q, against scipy.stats.entropy."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from xent_plugin.functional import kl_divergence

FORMATS = ["logits", "probs", "log_probs"]


def _distribution(seed: int, rows: int = 120, classes: int = 5) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (2 * torch.randn(rows, classes, generator=g, dtype=torch.float64)).softmax(dim=1)


def _as_format(probs: torch.Tensor, input_format: str) -> torch.Tensor:
    """The same distribution in ``input_format``; logits get an arbitrary per-row shift, as real logits have."""
    if input_format == "probs":
        return probs
    if input_format == "log_probs":
        return probs.log()
    return probs.log() + torch.linspace(-3, 3, probs.shape[0], dtype=probs.dtype)[:, None]


def _scipy_mean_kl(p: torch.Tensor, q: torch.Tensor) -> float:
    return float(scipy.stats.entropy(p.numpy(), q.numpy(), axis=1).mean())


@pytest.mark.parametrize("target_format", FORMATS)
@pytest.mark.parametrize("input_format", FORMATS)
def test_forward_kl_matches_scipy(input_format, target_format):
    q, p = _distribution(0), _distribution(1)
    actual = kl_divergence(
        _as_format(q, input_format),
        _as_format(p, target_format),
        input_format=input_format,
        target_format=target_format,
    )
    assert actual.item() == pytest.approx(_scipy_mean_kl(p, q), rel=1e-10)


@pytest.mark.parametrize("target_format", FORMATS)
@pytest.mark.parametrize("input_format", FORMATS)
def test_reverse_kl_matches_scipy_with_the_arguments_swapped(input_format, target_format):
    q, p = _distribution(2), _distribution(3)
    actual = kl_divergence(
        _as_format(q, input_format),
        _as_format(p, target_format),
        input_format=input_format,
        target_format=target_format,
        direction="reverse",
    )
    assert actual.item() == pytest.approx(_scipy_mean_kl(q, p), rel=1e-10)


def test_kl_is_asymmetric():
    q, p = _distribution(4), _distribution(5)
    forward = kl_divergence(q, p, input_format="probs")
    reverse = kl_divergence(q, p, input_format="probs", direction="reverse")
    assert forward.item() != pytest.approx(reverse.item(), rel=1e-3)


def test_float32_logits_match_scipy_on_their_softmax():
    g = torch.Generator().manual_seed(6)
    logits = torch.randn(64, 10, generator=g)
    p = torch.randn(64, 10, generator=g).softmax(dim=1)
    expected = _scipy_mean_kl(p.double(), logits.double().softmax(dim=1))
    assert kl_divergence(logits, p).item() == pytest.approx(expected, rel=1e-5)


def test_class_dim_last_matches_scipy_over_the_last_axis():
    g = torch.Generator().manual_seed(7)
    logits = torch.randn(2, 6, 9, generator=g, dtype=torch.float64)
    p = torch.randn(2, 6, 9, generator=g, dtype=torch.float64).softmax(dim=-1)
    expected = _scipy_mean_kl(p.reshape(-1, 9), logits.softmax(dim=-1).reshape(-1, 9))
    assert kl_divergence(logits, p, class_dim=-1).item() == pytest.approx(expected, rel=1e-10)


def test_model_probability_zero_where_the_reference_has_mass_is_infinite():
    logits = torch.tensor([[0.0, float("-inf")], [0.0, 0.0]])
    p = torch.tensor([[0.5, 0.5], [0.5, 0.5]])
    assert kl_divergence(logits, p).item() == float("inf")


def test_reverse_kl_is_infinite_where_the_model_has_mass_the_reference_rules_out():
    q = torch.tensor([[0.5, 0.5]], dtype=torch.float64)
    p = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    assert kl_divergence(q, p, input_format="probs", direction="reverse").item() == float("inf")


def test_reference_zeros_contribute_zero_log_zero():
    q = _distribution(8, rows=30)
    p = _distribution(9, rows=30)
    p[:, 1:3] = 0
    p = p / p.sum(dim=1, keepdim=True)
    actual = kl_divergence(q.log(), p, input_format="log_probs")
    assert torch.isfinite(actual)
    assert actual.item() == pytest.approx(_scipy_mean_kl(p, q), rel=1e-10)


def test_a_class_masked_on_both_sides_contributes_nothing():
    q = _distribution(10, rows=30, classes=4)
    p = _distribution(11, rows=30, classes=4)
    masked_logits = torch.cat([q.log(), torch.full((30, 1), float("-inf"), dtype=torch.float64)], dim=1)
    padded_p = torch.cat([p, torch.zeros(30, 1, dtype=torch.float64)], dim=1)
    assert kl_divergence(masked_logits, padded_p).item() == pytest.approx(_scipy_mean_kl(p, q), rel=1e-10)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_probability_target_is_accepted(dtype):
    g = torch.Generator().manual_seed(12)
    logits = torch.randn(256, 10, generator=g)
    p = torch.randn(256, 10, generator=g).softmax(dim=1).to(dtype)
    # The target is taken as given (rows within 16-bit rounding of 1), not renormalised as scipy would.
    p64, log_q = p.double(), logits.double().log_softmax(dim=1)
    expected = (p64 * (p64.log() - log_q)).sum(dim=1).mean().item()
    assert kl_divergence(logits, p).item() == pytest.approx(expected, rel=1e-5)


_rows = st.integers(1, 6).flatmap(
    lambda rows: st.integers(2, 6).flatmap(
        lambda classes: st.tuples(
            arrays(np.float64, (rows, classes), elements=st.floats(-15, 15)),
            arrays(np.float64, (rows, classes), elements=st.floats(-15, 15)),
            arrays(np.bool_, (rows, classes)),
        )
    )
)


def _with_zeros(logits: np.ndarray, zero: np.ndarray) -> torch.Tensor:
    zero = torch.from_numpy(zero)
    zero[:, 0] = False  # keep at least one class with mass
    return torch.from_numpy(logits).masked_fill(zero, float("-inf")).softmax(dim=1)


@settings(max_examples=40, deadline=None)
@given(_rows)
def test_kl_is_never_negative(inputs):
    model_logits, target_logits, zero = inputs
    assert kl_divergence(torch.from_numpy(model_logits), _with_zeros(target_logits, zero)).item() >= 0


@settings(max_examples=40, deadline=None)
@given(_rows, st.sampled_from(FORMATS))
def test_kl_of_a_distribution_from_itself_is_zero(inputs, input_format):
    _, target_logits, zero = inputs
    p = _with_zeros(target_logits, zero)
    preds = p if input_format == "probs" else p.log()
    assert kl_divergence(preds, p, input_format=input_format).item() == pytest.approx(0.0, abs=1e-12)
