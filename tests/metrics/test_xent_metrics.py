"""XentMetrics: every value from one pass, equal to the separate metrics, with CE = H + KL and a fixed-size state."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from xent_plugin.metrics import (
    BinaryCrossEntropy,
    BrierScore,
    CalibrationError,
    CrossEntropy,
    Entropy,
    KLDivergence,
    Perplexity,
    XentMetrics,
)

from ._metric_cases import multiclass_batch, multilabel_batch


def _with_reference(rows: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    logits, labels = multiclass_batch(rows, seed)
    reference = torch.randn(logits.shape, generator=torch.Generator().manual_seed(seed + 100)).softmax(dim=1)
    return logits, labels, reference


def _fed(metric, batches):
    for batch in batches:
        metric.update(*batch)
    return metric.compute()


def test_values_equal_those_of_the_separate_metrics():
    batches = [_with_reference(rows, seed) for seed, rows in enumerate([40, 25, 63])]
    hard = [(logits, labels) for logits, labels, _ in batches]
    soft = [(logits, reference) for logits, _, reference in batches]
    values = _fed(XentMetrics(n_bins=12), batches)
    expected = {
        "cross_entropy": _fed(CrossEntropy(), hard),
        "perplexity": _fed(Perplexity(class_dim=1), hard),
        "entropy": _fed(Entropy(), hard),
        "brier_score": _fed(BrierScore(), hard),
        "ece": _fed(CalibrationError(n_bins=12), hard),
        "mce": _fed(CalibrationError(n_bins=12, norm="max"), hard),
        "rmsce": _fed(CalibrationError(n_bins=12, norm="l2"), hard),
        "kl": _fed(KLDivergence(), soft),
    }
    for name, value in expected.items():
        assert values[name].item() == pytest.approx(value.item(), rel=1e-12), name
    # H(r, q) is summed term by term here and as log S - sum_c r_c s_c by CrossEntropy: equal to float32 rounding.
    reference_cross_entropy = _fed(CrossEntropy(), soft)
    assert values["reference_cross_entropy"].item() == pytest.approx(reference_cross_entropy.item(), rel=1e-6)


def test_accuracy_and_reference_entropy_match_numpy_and_scipy():
    logits, labels, reference = _with_reference(200, 0)
    metric = XentMetrics()
    metric.update(logits, labels, reference=reference)
    values = metric.compute()
    assert values["accuracy"].item() == pytest.approx((logits.argmax(dim=1) == labels).double().mean().item())
    expected_entropy = scipy.stats.entropy(reference.double().numpy(), axis=1).mean()
    assert values["reference_entropy"].item() == pytest.approx(float(expected_entropy), rel=1e-6)


def test_without_a_reference_there_are_no_reference_values():
    metric = XentMetrics()
    metric.update(*multiclass_batch(20, 1))
    assert not {"kl", "reference_entropy", "reference_cross_entropy"} & set(metric.compute())


def test_label_smoothing_changes_the_cross_entropy_only():
    logits, labels = multiclass_batch(100, 2)
    smoothed, plain = XentMetrics(label_smoothing=0.2), XentMetrics()
    smoothed.update(logits, labels)
    plain.update(logits, labels)
    smoothed_values, plain_values = smoothed.compute(), plain.compute()
    expected = F.cross_entropy(logits.double(), labels, label_smoothing=0.2)
    assert smoothed_values["cross_entropy"].item() == pytest.approx(expected.item(), rel=1e-6)
    for name in ["entropy", "brier_score", "accuracy", "ece"]:
        assert smoothed_values[name].item() == plain_values[name].item(), name


def test_multilabel_values_equal_the_separate_binary_metrics():
    batches = [multilabel_batch(rows, seed) for seed, rows in enumerate([30, 45])]
    values = _fed(XentMetrics(task="multilabel", num_labels=3), batches)
    assert values["cross_entropy"].item() == pytest.approx(_fed(BinaryCrossEntropy(), batches).item(), rel=1e-12)
    assert values["brier_score"].item() == pytest.approx(
        _fed(BrierScore(task="multilabel", num_labels=3), batches).item()
    )
    ece = _fed(CalibrationError(task="multilabel", num_labels=3), batches)
    assert values["ece"].item() == pytest.approx(ece.item(), rel=1e-12)
    assert "perplexity" not in values


def test_reference_with_a_binary_task_is_rejected():
    metric = XentMetrics(task="binary")
    with pytest.raises(ValueError, match=r"`reference` is supported for task='multiclass' only, not 'binary'"):
        metric.update(torch.zeros(3), torch.zeros(3, dtype=torch.long), reference=torch.zeros(3))


def test_reliability_table_is_the_one_calibration_error_keeps():
    batches = [multiclass_batch(rows, seed) for seed, rows in enumerate([50, 70])]
    xent, calibration = XentMetrics(n_bins=8), CalibrationError(n_bins=8)
    _fed(xent, batches)
    _fed(calibration, batches)
    ours, theirs = xent.reliability_table(), calibration.reliability_table()
    for key in theirs:
        torch.testing.assert_close(ours[key], theirs[key], equal_nan=True, rtol=0, atol=0)


@pytest.mark.slow
def test_state_bytes_after_ten_samples_equal_those_after_a_million():
    def state_bytes(rows: int) -> int:
        metric = XentMetrics(validate_args=False)
        metric.update(*multiclass_batch(rows, 3, classes=3))
        return metric.state_bytes()

    small = state_bytes(10)
    assert state_bytes(10**6) == small
    metric = XentMetrics()
    assert small == sum(getattr(metric, name).numel() * 8 for name in metric.sum_state_names)


@pytest.mark.parametrize(
    "dtype",
    [
        torch.float32,
        pytest.param(
            torch.bfloat16,
        ),
    ],
)
def test_a_soft_target_is_its_own_reference(dtype):
    logits, _, reference = _with_reference(256, 4)
    metric = XentMetrics()
    metric.update(logits, reference.to(dtype))
    values = metric.compute()
    assert values["cross_entropy"].item() == pytest.approx(values["reference_cross_entropy"].item(), rel=1e-7)


_rows = st.integers(1, 6).flatmap(
    lambda rows: st.integers(2, 6).flatmap(
        lambda classes: st.tuples(
            arrays(np.float64, (rows, classes), elements=st.floats(-15, 15)),
            arrays(np.float64, (rows, classes), elements=st.floats(-15, 15)),
            arrays(np.bool_, (rows, classes)),
        )
    )
)


def _soft_target(logits: np.ndarray, zero: np.ndarray) -> torch.Tensor:
    zero = torch.from_numpy(zero)
    zero[:, 0] = False  # keep at least one class with mass
    return torch.from_numpy(logits).masked_fill(zero, -math.inf).softmax(dim=1)


@settings(max_examples=40, deadline=None)
@given(_rows)
def test_cross_entropy_of_soft_targets_is_their_entropy_plus_kl(inputs):
    model_logits, target_logits, zero = inputs
    metric = XentMetrics()
    metric.update(torch.from_numpy(model_logits), _soft_target(target_logits, zero))
    values = metric.compute()
    decomposition = values["reference_entropy"] + values["kl"]
    assert values["cross_entropy"].item() == pytest.approx(decomposition.item(), rel=1e-9, abs=1e-9)


@settings(max_examples=40, deadline=None)
@given(_rows, st.integers(0, 5))
def test_reference_cross_entropy_is_reference_entropy_plus_kl(inputs, seed):
    model_logits, target_logits, zero = inputs
    labels = torch.randint(
        0, model_logits.shape[1], (model_logits.shape[0],), generator=torch.Generator().manual_seed(seed)
    )
    metric = XentMetrics()
    metric.update(torch.from_numpy(model_logits), labels, reference=_soft_target(target_logits, zero))
    values = metric.compute()
    assert values["kl"].item() >= 0
    decomposition = values["reference_entropy"] + values["kl"]
    assert values["reference_cross_entropy"].item() == pytest.approx(decomposition.item(), rel=1e-9, abs=1e-9)
