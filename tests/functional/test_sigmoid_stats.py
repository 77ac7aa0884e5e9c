"""binary_stats: the one sigmoid pass for binary and multilabel inputs, in float64 sums at any input dtype."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from xent_plugin.functional import binary_cross_entropy, binary_stats

HALF_DTYPES = [torch.bfloat16, torch.float16]


def _batch(seed: int, shape: tuple[int, ...] = (300,)) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return 3 * torch.randn(shape, generator=g), torch.randint(0, 2, shape, generator=g)


@pytest.mark.parametrize("dtype", HALF_DTYPES)
def test_half_precision_logits_match_float64_on_the_same_rounded_values(dtype):
    logits, labels = _batch(0, shape=(200, 3))
    rounded = logits.to(dtype)
    expected = F.binary_cross_entropy_with_logits(rounded.double(), labels.double())
    assert binary_cross_entropy(rounded, labels).item() == pytest.approx(expected.item(), rel=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64])
def test_every_sum_is_float64_whatever_the_input_dtype(dtype):
    logits, labels = _batch(1)
    stats = binary_stats(logits.to(dtype), labels, n_bins=5)
    sums = [stats.count, stats.cross_entropy, stats.entropy, stats.brier, stats.correct, stats.bins]
    assert all(s.dtype == torch.float64 for s in sums)


def test_multilabel_histogram_has_one_row_of_bins_per_label():
    logits, labels = _batch(2, shape=(50, 4))
    stats = binary_stats(logits, labels, n_bins=6, multilabel=True)
    assert stats.bins.shape == (3, 4, 6)
    assert stats.bins[0].sum(dim=1).tolist() == [50.0] * 4


def test_entropy_sum_matches_bernoulli_entropy():
    logits, labels = _batch(3)
    p = logits.double().sigmoid()
    expected = -(p * p.log() + (1 - p) * (1 - p).log()).sum()
    assert binary_stats(logits, labels).entropy.item() == pytest.approx(expected.item(), rel=1e-6)


def test_accuracy_sum_counts_entries_thresholded_at_one_half():
    logits, labels = _batch(4)
    stats = binary_stats(logits, labels)
    assert stats.correct.item() == ((logits >= 0).long() == labels).sum().item()
