"""brier_score: squared error of the predicted distribution, summed over classes (multiclass) or per entry."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import brier_score_loss

from xent_plugin.functional import brier_score


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _numpy_multiclass_brier(probs: np.ndarray, target_probs: np.ndarray) -> float:
    return float(((probs - target_probs) ** 2).sum(axis=1).mean())


def test_binary_probabilities_match_sklearn():
    g = _generator(0)
    probs = torch.rand(300, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 2, (300,), generator=g)
    expected = brier_score_loss(labels.numpy(), probs.numpy())
    actual = brier_score(probs, labels, task="binary", input_format="probs")
    assert actual.item() == pytest.approx(expected, rel=1e-12)


def test_binary_logits_match_sklearn_on_their_sigmoid():
    g = _generator(1)
    logits = 2 * torch.randn(300, generator=g)
    labels = torch.randint(0, 2, (300,), generator=g)
    expected = brier_score_loss(labels.numpy(), logits.double().sigmoid().numpy())
    assert brier_score(logits, labels, task="binary").item() == pytest.approx(expected, rel=1e-6)


def test_multiclass_hard_labels_match_numpy_sum_over_classes():
    g = _generator(2)
    logits = 2 * torch.randn(200, 6, generator=g)
    labels = torch.randint(0, 6, (200,), generator=g)
    one_hot = np.eye(6)[labels.numpy()]
    expected = _numpy_multiclass_brier(logits.double().softmax(dim=1).numpy(), one_hot)
    assert brier_score(logits, labels).item() == pytest.approx(expected, rel=1e-6)


def test_multiclass_soft_labels_match_numpy():
    g = _generator(3)
    probs = torch.randn(200, 4, generator=g, dtype=torch.float64).softmax(dim=1)
    target = torch.randn(200, 4, generator=g, dtype=torch.float64).softmax(dim=1)
    expected = _numpy_multiclass_brier(probs.numpy(), target.numpy())
    assert brier_score(probs, target, input_format="probs").item() == pytest.approx(expected, rel=1e-12)


def test_multiclass_ignore_index_rows_are_not_counted():
    g = _generator(4)
    logits = torch.randn(100, 3, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 3, (100,), generator=g)
    labels[::4] = -100
    kept = labels != -100
    expected = _numpy_multiclass_brier(logits[kept].softmax(dim=1).numpy(), np.eye(3)[labels[kept].numpy()])
    assert brier_score(logits, labels, ignore_index=-100).item() == pytest.approx(expected, rel=1e-12)


def test_multiclass_masked_class_matches_dropping_it():
    g = _generator(5)
    logits = torch.randn(50, 4, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 3, (50,), generator=g)
    expected = _numpy_multiclass_brier(logits[:, :3].softmax(dim=1).numpy(), np.eye(3)[labels.numpy()])
    logits[:, 3] = float("-inf")
    assert brier_score(logits, labels).item() == pytest.approx(expected, rel=1e-12)


def test_multilabel_is_the_mean_over_every_entry_as_sklearn_per_label():
    g = _generator(6)
    probs = torch.rand(120, 4, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 2, (120, 4), generator=g)
    per_label = [brier_score_loss(labels[:, j].numpy(), probs[:, j].numpy()) for j in range(4)]
    actual = brier_score(probs, labels, task="multilabel", input_format="probs")
    assert actual.item() == pytest.approx(float(np.mean(per_label)), rel=1e-12)


def test_perfect_one_hot_prediction_scores_zero_and_confident_mistake_scores_two():
    probs = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    assert brier_score(probs, torch.tensor([0, 1]), input_format="probs").item() == 0.0
    assert brier_score(probs, torch.tensor([1, 0]), input_format="probs").item() == pytest.approx(2.0)
