"""binary_cross_entropy: binary and multilabel log loss, against sklearn's log_loss and torch's BCE."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import log_loss

from xent_plugin.functional import binary_cross_entropy


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_binary_probabilities_match_sklearn_log_loss():
    g = _generator(0)
    probs = torch.rand(400, generator=g, dtype=torch.float64) * 0.98 + 0.01
    labels = torch.randint(0, 2, (400,), generator=g)
    expected = log_loss(labels.numpy(), probs.numpy())
    assert binary_cross_entropy(probs, labels, input_format="probs").item() == pytest.approx(expected, rel=1e-12)


def test_binary_logits_match_torch_bce_with_logits():
    g = _generator(1)
    logits = 3 * torch.randn(400, generator=g)
    labels = torch.randint(0, 2, (400,), generator=g)
    expected = F.binary_cross_entropy_with_logits(logits.double(), labels.double())
    assert binary_cross_entropy(logits, labels).item() == pytest.approx(expected.item(), rel=1e-6)


def test_binary_logits_match_sklearn_log_loss_on_their_sigmoid():
    g = _generator(2)
    logits = 3 * torch.randn(400, generator=g)
    labels = torch.randint(0, 2, (400,), generator=g)
    expected = log_loss(labels.numpy(), logits.double().sigmoid().numpy())
    assert binary_cross_entropy(logits, labels).item() == pytest.approx(expected, rel=1e-6)


def test_multilabel_is_the_mean_of_sklearn_log_loss_per_label():
    g = _generator(3)
    probs = torch.rand(150, 5, generator=g, dtype=torch.float64) * 0.98 + 0.01
    labels = torch.randint(0, 2, (150, 5), generator=g)
    per_label = [log_loss(labels[:, j].numpy(), probs[:, j].numpy()) for j in range(5)]
    actual = binary_cross_entropy(probs, labels, input_format="probs")
    assert actual.item() == pytest.approx(float(np.mean(per_label)), rel=1e-12)


def test_multilabel_logits_match_torch_bce_with_logits():
    g = _generator(4)
    logits = 2 * torch.randn(150, 5, generator=g)
    labels = torch.randint(0, 2, (150, 5), generator=g)
    expected = F.binary_cross_entropy_with_logits(logits.double(), labels.double())
    assert binary_cross_entropy(logits, labels).item() == pytest.approx(expected.item(), rel=1e-6)


def test_soft_labels_match_torch_bce_with_logits():
    g = _generator(5)
    logits = 2 * torch.randn(200, generator=g)
    soft = torch.rand(200, generator=g)
    expected = F.binary_cross_entropy_with_logits(logits.double(), soft.double())
    assert binary_cross_entropy(logits, soft).item() == pytest.approx(expected.item(), rel=1e-6)


def test_ignore_index_entries_are_not_counted():
    g = _generator(6)
    logits = torch.randn(60, 3, generator=g)
    labels = torch.randint(0, 2, (60, 3), generator=g)
    labels[::5, 1] = -1
    kept = labels != -1
    expected = F.binary_cross_entropy_with_logits(logits[kept].double(), labels[kept].double())
    assert binary_cross_entropy(logits, labels, ignore_index=-1).item() == pytest.approx(expected.item(), rel=1e-6)


def test_extreme_logits_stay_finite_where_sigmoid_rounds_to_zero_or_one():
    logits = torch.tensor([100.0, -100.0, 60.0, -60.0])
    labels = torch.tensor([0, 1, 1, 0])
    expected = F.binary_cross_entropy_with_logits(logits.double(), labels.double())
    actual = binary_cross_entropy(logits, labels)
    assert torch.isfinite(actual)
    assert actual.item() == pytest.approx(expected.item(), rel=1e-6)


def test_certain_and_right_probabilities_cost_nothing():
    probs = torch.tensor([1.0, 0.0, 1.0])
    assert binary_cross_entropy(probs, torch.tensor([1, 0, 1]), input_format="probs").item() == 0.0
