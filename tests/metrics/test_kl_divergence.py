"""KLDivergence: streaming KL(p || q) (or KL(q || p)) of the reference target from the model, against scipy."""

from __future__ import annotations

import pytest
import scipy.stats
import torch

from xent_plugin.metrics import Entropy, KLDivergence

from ._metric_cases import soft_batch


def _batches():
    return [soft_batch(rows, seed) for seed, rows in enumerate([20, 7, 41])]


@pytest.mark.parametrize("direction", ["forward", "reverse"])
def test_streaming_matches_scipy_on_all_the_data(direction):
    metric = KLDivergence(direction=direction)
    for batch in _batches():
        metric.update(*batch)
    q = torch.cat([b[0] for b in _batches()]).double().softmax(dim=1).numpy()
    p = torch.cat([b[1] for b in _batches()]).double().numpy()
    first, second = (p, q) if direction == "forward" else (q, p)
    expected = scipy.stats.entropy(first, second, axis=1).mean()
    assert metric.compute().item() == pytest.approx(float(expected), rel=1e-5)


def test_a_masked_class_the_reference_uses_makes_the_result_infinite():
    metric = KLDivergence()
    metric.update(*soft_batch(10, 0))
    metric.update(torch.tensor([[0.0, float("-inf")]]), torch.tensor([[0.5, 0.5]]))
    assert metric.compute().item() == float("inf")


def test_entropy_ignores_the_target_it_is_given():
    logits, _ = soft_batch(30, 1)
    with_target, without = Entropy(), Entropy()
    with_target.update(logits, torch.zeros(30, dtype=torch.long))
    without.update(logits)
    assert with_target.compute().item() == without.compute().item()
    expected = scipy.stats.entropy(logits.double().softmax(dim=1).numpy(), axis=1).mean()
    assert without.compute().item() == pytest.approx(float(expected), rel=1e-6)
