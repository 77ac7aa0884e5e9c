"""CrossEntropy and Perplexity: the streaming mean over every counted position, as one F.cross_entropy call."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from xent_plugin.metrics import CrossEntropy, Perplexity

from ._metric_cases import multiclass_batch, token_batch


def test_ignored_positions_weight_the_mean_by_counted_rows_not_by_batch():
    g = torch.Generator().manual_seed(0)
    batches = []
    for rows, ignored in [(10, 9), (50, 0), (30, 15)]:
        logits = torch.randn(rows, 4, generator=g)
        labels = torch.randint(0, 4, (rows,), generator=g)
        labels[:ignored] = -100
        batches.append((logits, labels))
    metric = CrossEntropy(ignore_index=-100)
    for batch in batches:
        metric.update(*batch)
    logits = torch.cat([b[0] for b in batches]).double()
    labels = torch.cat([b[1] for b in batches])
    expected = F.cross_entropy(logits, labels, ignore_index=-100)
    assert metric.compute().item() == pytest.approx(expected.item(), rel=1e-6)


def test_label_smoothing_and_spatial_layout_stream_like_torch():
    g = torch.Generator().manual_seed(1)
    batches = [(torch.randn(n, 3, 4, 4, generator=g), torch.randint(0, 3, (n, 4, 4), generator=g)) for n in (2, 5)]
    metric = CrossEntropy(label_smoothing=0.15)
    for batch in batches:
        metric.update(*batch)
    logits = torch.cat([b[0] for b in batches]).double()
    labels = torch.cat([b[1] for b in batches])
    expected = F.cross_entropy(logits, labels, label_smoothing=0.15)
    assert metric.compute().item() == pytest.approx(expected.item(), rel=1e-6)


def test_perplexity_streams_as_exp_of_the_token_cross_entropy():
    batches = [token_batch(rows, seed) for seed, rows in enumerate([3, 8, 5])]
    metric = Perplexity(ignore_index=-100)
    for batch in batches:
        metric.update(*batch)
    logits = torch.cat([b[0] for b in batches]).double()
    tokens = torch.cat([b[1] for b in batches])
    expected = F.cross_entropy(logits.reshape(-1, 7), tokens.reshape(-1), ignore_index=-100).exp()
    assert metric.compute().item() == pytest.approx(expected.item(), rel=1e-6)


def test_state_is_two_float64_numbers():
    metric = CrossEntropy()
    assert sorted(metric.sum_state_names) == ["count", "cross_entropy"]
    assert all(getattr(metric, name).shape == () for name in metric.sum_state_names)


@pytest.mark.slow
def test_ten_million_samples_stay_within_1e_9_of_a_float64_sum():
    logits, labels = multiclass_batch(10**6, 5, classes=3)
    updates = 10
    # The same batch each time, so the float64 reference is one exact sum of its per-sample terms.
    per_sample = F.cross_entropy(logits.double(), labels, reduction="none").tolist()
    expected = math.fsum(per_sample) / len(per_sample)
    metric = CrossEntropy(validate_args=False)
    for _ in range(updates):
        metric.update(logits, labels)
    assert metric.count.item() == 10**7
    assert metric.compute().item() == pytest.approx(expected, rel=1e-9)
