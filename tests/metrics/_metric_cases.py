"""One entry per metric configuration: how to build it and a seeded batch of its inputs.

Shared by the per-class contract tests and the distributed worker, which rebuilds the same data in each
process from the seed alone.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor
from torchmetrics import Metric

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

Batch = tuple[Tensor, Tensor]


def multiclass_batch(rows: int, seed: int, classes: int = 5) -> Batch:
    g = torch.Generator().manual_seed(seed)
    return 2 * torch.randn(rows, classes, generator=g), torch.randint(0, classes, (rows,), generator=g)


def multiclass_batch_with_ignored(rows: int, seed: int) -> Batch:
    logits, labels = multiclass_batch(rows, seed)
    labels[::4] = -100
    return logits, labels


def soft_batch(rows: int, seed: int, classes: int = 5) -> Batch:
    g = torch.Generator().manual_seed(seed)
    return 2 * torch.randn(rows, classes, generator=g), torch.randn(rows, classes, generator=g).softmax(dim=1)


def token_batch(rows: int, seed: int, steps: int = 4, vocab: int = 7) -> Batch:
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, vocab, (rows, steps), generator=g)
    tokens[:, -1] = -100
    return torch.randn(rows, steps, vocab, generator=g), tokens


def binary_logit_batch(rows: int, seed: int) -> Batch:
    g = torch.Generator().manual_seed(seed)
    return 2 * torch.randn(rows, generator=g), torch.randint(0, 2, (rows,), generator=g)


def binary_prob_batch(rows: int, seed: int) -> Batch:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(rows, generator=g) * 0.999, torch.randint(0, 2, (rows,), generator=g)


def multilabel_batch(rows: int, seed: int, labels: int = 3) -> Batch:
    g = torch.Generator().manual_seed(seed)
    return 2 * torch.randn(rows, labels, generator=g), torch.randint(0, 2, (rows, labels), generator=g)


@dataclass(frozen=True)
class MetricCase:
    name: str
    make_metric: Callable[..., Metric]
    make_batch: Callable[[int, int], Batch]

    def __str__(self) -> str:
        return self.name


CASES = [
    MetricCase("cross_entropy", CrossEntropy, multiclass_batch),
    MetricCase(
        "cross_entropy_smoothed_ignored",
        lambda **kw: CrossEntropy(ignore_index=-100, label_smoothing=0.1, **kw),
        multiclass_batch_with_ignored,
    ),
    MetricCase("cross_entropy_soft", CrossEntropy, soft_batch),
    MetricCase("perplexity", lambda **kw: Perplexity(ignore_index=-100, **kw), token_batch),
    MetricCase("binary_cross_entropy", BinaryCrossEntropy, binary_logit_batch),
    MetricCase("binary_cross_entropy_multilabel", BinaryCrossEntropy, multilabel_batch),
    MetricCase("kl_divergence", KLDivergence, soft_batch),
    MetricCase("kl_divergence_reverse", lambda **kw: KLDivergence(direction="reverse", **kw), soft_batch),
    MetricCase("entropy", Entropy, multiclass_batch),
    MetricCase("brier_score", BrierScore, multiclass_batch),
    MetricCase(
        "brier_score_binary", lambda **kw: BrierScore(task="binary", input_format="probs", **kw), binary_prob_batch
    ),
    MetricCase("calibration_error", CalibrationError, multiclass_batch),
    MetricCase(
        "calibration_error_binary_positive_l2",
        lambda **kw: CalibrationError(
            task="binary", input_format="probs", calibration_mode="positive", norm="l2", n_bins=10, **kw
        ),
        binary_prob_batch,
    ),
    MetricCase(
        "calibration_error_multilabel_max",
        lambda **kw: CalibrationError(task="multilabel", num_labels=3, norm="max", average="none", **kw),
        multilabel_batch,
    ),
    MetricCase("xent_metrics_soft", XentMetrics, soft_batch),
    MetricCase(
        "xent_metrics_ignored", lambda **kw: XentMetrics(ignore_index=-100, **kw), multiclass_batch_with_ignored
    ),
    MetricCase(
        "xent_metrics_multilabel", lambda **kw: XentMetrics(task="multilabel", num_labels=3, **kw), multilabel_batch
    ),
]
CASES_BY_NAME = {case.name: case for case in CASES}


def in_float64(batch: Batch) -> Batch:
    """The batch with floating-point tensors in float64, so every per-sample term is computed in float64."""
    return tuple(t.double() if t.is_floating_point() else t for t in batch)


def as_dict(value: Tensor | dict[str, Tensor]) -> dict[str, Tensor]:
    return value if isinstance(value, dict) else {"value": value}


def assert_values_close(actual, expected, rtol: float, atol: float = 0.0) -> None:
    """Compare what two compute() calls returned (a tensor or a dict of them); NaN equals NaN."""
    actual, expected = as_dict(actual), as_dict(expected)
    assert actual.keys() == expected.keys()
    for key in expected:
        a, e = actual[key].double(), expected[key].double()
        assert a.shape == e.shape, key
        both_nan = torch.isnan(a) & torch.isnan(e)
        close = both_nan | (a == e) | ((a - e).abs() <= atol + rtol * e.abs())
        assert bool(close.all()), f"{key}: {a} != {e}"


def is_nan_everywhere(value) -> bool:
    return all(math.isnan(v) for t in as_dict(value).values() for v in t.reshape(-1).tolist())
