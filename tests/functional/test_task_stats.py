"""task_stats: multiclass goes through the softmax pass, binary and multilabel through the sigmoid pass."""

from __future__ import annotations

import pytest
import torch

from xent_plugin.functional import BinaryStats, SufficientStats, binary_stats, sufficient_stats, task_stats


def test_multiclass_is_the_softmax_pass():
    logits = torch.randn(10, 4, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(10) % 4
    stats = task_stats(logits, labels, n_bins=5)
    assert isinstance(stats, SufficientStats)
    assert stats.cross_entropy.item() == sufficient_stats(logits, labels).cross_entropy.item()


@pytest.mark.parametrize("task, shape", [("binary", (12,)), ("multilabel", (6, 2))])
def test_binary_and_multilabel_are_the_sigmoid_pass(task, shape):
    logits = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    labels = (torch.arange(12).reshape(shape) % 2).long()
    stats = task_stats(logits, labels, task=task, n_bins=5)
    assert isinstance(stats, BinaryStats)
    expected = binary_stats(logits, labels, n_bins=5, multilabel=task == "multilabel")
    assert stats.cross_entropy.item() == expected.cross_entropy.item()
    assert stats.bins.shape == expected.bins.shape
