"""cross_entropy: the mean of -sum_c p_c log q_c, as sklearn's log_loss and torch's F.cross_entropy define it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.metrics import log_loss

from xent_plugin.functional import cross_entropy, entropy, kl_divergence
from xent_plugin.functional._layout import CHUNK_ELEMENTS


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _logits_and_labels(seed: int, rows: int = 200, classes: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    g = _generator(seed)
    return 3 * torch.randn(rows, classes, generator=g), torch.randint(0, classes, (rows,), generator=g)


def _soft_labels(seed: int, shape: tuple[int, ...], class_dim: int = 1) -> torch.Tensor:
    return torch.randn(shape, generator=_generator(seed)).softmax(dim=class_dim)


def test_probabilities_match_sklearn_log_loss():
    logits, labels = _logits_and_labels(0)
    probs = logits.double().softmax(dim=1)
    expected = log_loss(labels.numpy(), probs.numpy(), labels=range(6))
    assert cross_entropy(probs, labels, input_format="probs").item() == pytest.approx(expected, rel=1e-12)


def test_logits_match_sklearn_log_loss_on_their_softmax():
    logits, labels = _logits_and_labels(1)
    expected = log_loss(labels.numpy(), logits.double().softmax(dim=1).numpy(), labels=range(6))
    assert cross_entropy(logits, labels).item() == pytest.approx(expected, rel=1e-6)


def test_hard_labels_match_torch_cross_entropy():
    logits, labels = _logits_and_labels(2)
    expected = F.cross_entropy(logits.double(), labels)
    assert cross_entropy(logits, labels).item() == pytest.approx(expected.item(), rel=1e-6)


def test_soft_labels_match_torch_cross_entropy():
    logits, _ = _logits_and_labels(3)
    target = _soft_labels(4, logits.shape)
    expected = F.cross_entropy(logits.double(), target.double())
    assert cross_entropy(logits, target).item() == pytest.approx(expected.item(), rel=1e-6)


def test_ignore_index_rows_are_not_counted_as_in_torch():
    logits, labels = _logits_and_labels(5)
    labels[::3] = -100
    expected = F.cross_entropy(logits.double(), labels, ignore_index=-100)
    assert cross_entropy(logits, labels, ignore_index=-100).item() == pytest.approx(expected.item(), rel=1e-6)


@pytest.mark.parametrize("label_smoothing", [0.05, 0.3, 1.0])
def test_label_smoothing_matches_torch_for_hard_labels(label_smoothing):
    logits, labels = _logits_and_labels(6)
    expected = F.cross_entropy(logits.double(), labels, label_smoothing=label_smoothing)
    actual = cross_entropy(logits, labels, label_smoothing=label_smoothing)
    assert actual.item() == pytest.approx(expected.item(), rel=1e-6)


def test_label_smoothing_matches_torch_for_soft_labels():
    logits, _ = _logits_and_labels(7)
    target = _soft_labels(8, logits.shape)
    expected = F.cross_entropy(logits.double(), target.double(), label_smoothing=0.2)
    assert cross_entropy(logits, target, label_smoothing=0.2).item() == pytest.approx(expected.item(), rel=1e-6)


def test_label_smoothing_with_ignore_index_matches_torch():
    logits, labels = _logits_and_labels(9)
    labels[1::4] = -1
    expected = F.cross_entropy(logits.double(), labels, ignore_index=-1, label_smoothing=0.1)
    actual = cross_entropy(logits, labels, ignore_index=-1, label_smoothing=0.1)
    assert actual.item() == pytest.approx(expected.item(), rel=1e-6)


def test_spatial_layout_with_classes_at_dim_1_matches_torch():
    g = _generator(10)
    logits = torch.randn(4, 5, 3, 7, generator=g)
    labels = torch.randint(0, 5, (4, 3, 7), generator=g)
    labels[0, 0] = -100
    expected = F.cross_entropy(logits.double(), labels, ignore_index=-100)
    assert cross_entropy(logits, labels, ignore_index=-100).item() == pytest.approx(expected.item(), rel=1e-6)


def test_spatial_layout_with_soft_labels_matches_torch():
    logits = torch.randn(3, 4, 5, 2, generator=_generator(11))
    target = _soft_labels(12, logits.shape)
    expected = F.cross_entropy(logits.double(), target.double())
    assert cross_entropy(logits, target).item() == pytest.approx(expected.item(), rel=1e-6)


def test_token_layout_with_class_dim_last_matches_torch_on_flattened_tokens():
    g = _generator(13)
    logits = torch.randn(3, 11, 17, generator=g)
    labels = torch.randint(0, 17, (3, 11), generator=g)
    labels[:, -2:] = -100
    expected = F.cross_entropy(logits.double().reshape(-1, 17), labels.reshape(-1), ignore_index=-100)
    actual = cross_entropy(logits, labels, class_dim=-1, ignore_index=-100)
    assert actual.item() == pytest.approx(expected.item(), rel=1e-6)


def test_input_spanning_several_chunks_matches_torch():
    # More elements than one chunk holds, with the class dimension in the middle, so the rows are cut and moved.
    g = _generator(14)
    logits = torch.randn(2 * CHUNK_ELEMENTS // 40 + 3, 8, 5, generator=g)
    labels = torch.randint(0, 8, (logits.shape[0], 5), generator=g)
    expected = F.cross_entropy(logits.double(), labels)
    assert cross_entropy(logits, labels).item() == pytest.approx(expected.item(), rel=1e-6)


def test_class_dimension_first_matches_torch_on_the_transpose():
    g = _generator(19)
    logits = torch.randn(8, 400, generator=g)
    labels = torch.randint(0, 8, (400,), generator=g)
    expected = F.cross_entropy(logits.T.double(), labels)
    assert cross_entropy(logits, labels, class_dim=0).item() == pytest.approx(expected.item(), rel=1e-6)


def test_class_dimension_first_matches_torch_on_input_larger_than_a_chunk():
    g = _generator(20)
    logits = torch.randn(8, 40_000, generator=g)
    labels = torch.randint(0, 8, (40_000,), generator=g)
    expected = F.cross_entropy(logits.T.double(), labels)
    assert cross_entropy(logits, labels, class_dim=0).item() == pytest.approx(expected.item(), rel=1e-6)


@pytest.mark.parametrize("input_format", ["probs", "log_probs"])
def test_probability_and_log_probability_inputs_match_torch_on_their_log(input_format):
    logits, labels = _logits_and_labels(15)
    log_probs = logits.double().log_softmax(dim=1)
    preds = log_probs.exp() if input_format == "probs" else log_probs
    expected = F.nll_loss(log_probs, labels)
    assert cross_entropy(preds, labels, input_format=input_format).item() == pytest.approx(expected.item(), rel=1e-12)


def test_masked_classes_with_minus_inf_logits_match_torch():
    logits, labels = _logits_and_labels(16)
    masked = torch.zeros_like(logits, dtype=torch.bool)
    masked[:, 0] = True
    masked[::2, 3] = True
    labels[labels == 0] = 1
    labels[::2][labels[::2] == 3] = 2
    logits = logits.masked_fill(masked, float("-inf"))
    expected = F.cross_entropy(logits.double(), labels)
    actual = cross_entropy(logits, labels)
    assert torch.isfinite(actual)
    assert actual.item() == pytest.approx(expected.item(), rel=1e-6)


def test_masked_class_gives_the_same_loss_as_dropping_it():
    logits, labels = _logits_and_labels(17, classes=5)
    labels = labels.clamp_max(3)
    kept = logits[:, :4].double()
    expected = -kept.log_softmax(dim=1).gather(1, labels[:, None]).mean()
    masked = torch.cat([logits[:, :4], torch.full((logits.shape[0], 1), float("-inf"))], dim=1)
    assert cross_entropy(masked, labels).item() == pytest.approx(expected.item(), rel=1e-6)


def test_target_on_a_masked_class_costs_infinity():
    logits = torch.tensor([[0.0, float("-inf")], [1.0, 0.0]])
    assert cross_entropy(logits, torch.tensor([1, 0])).item() == float("inf")


def test_soft_labels_with_zero_mass_on_a_masked_class_stay_finite():
    logits = torch.tensor([[0.5, float("-inf"), -0.5]])
    target = torch.tensor([[0.25, 0.0, 0.75]])
    expected = -(0.25 * np.log(np.exp(0.5) / (np.exp(0.5) + np.exp(-0.5))) + 0.75 * np.log(1 / (1 + np.exp(1.0))))
    assert cross_entropy(logits, target).item() == pytest.approx(expected, rel=1e-6)


def test_every_row_ignored_returns_nan_with_a_warning():
    logits, labels = _logits_and_labels(18, rows=4)
    with pytest.warns(UserWarning, match="no samples were counted"):
        value = cross_entropy(logits, torch.full_like(labels, -100), ignore_index=-100)
    assert torch.isnan(value)


_distribution_rows = st.integers(1, 6).flatmap(
    lambda rows: st.integers(2, 6).flatmap(
        lambda classes: st.tuples(
            arrays(np.float64, (rows, classes), elements=st.floats(-15, 15)),
            arrays(np.float64, (rows, classes), elements=st.floats(-15, 15)),
            arrays(np.bool_, (rows, classes)),
        )
    )
)


@settings(max_examples=40, deadline=None)
@given(_distribution_rows)
def test_cross_entropy_is_entropy_of_the_target_plus_kl(inputs):
    """H(p, q) = H(p) + KL(p || q), with some of p's classes at exactly zero (0 log 0 = 0)."""
    model_logits, target_logits, zero = (torch.from_numpy(a) for a in inputs)
    zero[:, 0] = False  # keep at least one class with mass
    target = target_logits.masked_fill(zero, float("-inf")).softmax(dim=1)
    cross = cross_entropy(model_logits, target)
    decomposition = entropy(target, input_format="probs") + kl_divergence(model_logits, target)
    assert cross.item() == pytest.approx(decomposition.item(), rel=1e-9, abs=1e-9)
