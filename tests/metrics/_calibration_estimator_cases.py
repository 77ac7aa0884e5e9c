"""The issue-7 metrics, each with a seeded batch maker and its one-shot functional twin.

Shared by the metric contract tests and the gloo worker, which rebuilds the same data in each process.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor
from torchmetrics import Metric

from xent_plugin.functional.adaptive_calibration_error import adaptive_calibration_error, equal_mass_error_bound
from xent_plugin.functional.bootstrap import bootstrap_intervals
from xent_plugin.functional.calibration_test import calibration_test
from xent_plugin.functional.classwise_calibration_error import classwise_calibration_error
from xent_plugin.functional.confidence_histogram import confidence_histogram
from xent_plugin.functional.debiased_calibration_error import debiased_calibration_error
from xent_plugin.functional.smooth_calibration_error import _smooth_calibration_error_compute, smooth_calibration_error
from xent_plugin.functional.temperature_scan import temperature_scan
from xent_plugin.metrics import (
    AdaptiveCalibrationError,
    BootstrapIntervals,
    CalibrationEstimators,
    CalibrationTest,
    ClasswiseCalibrationError,
    DebiasedCalibrationError,
    SmoothCalibrationError,
    TemperatureScan,
)

Batch = tuple[Tensor, Tensor]
Value = Tensor | dict[str, Tensor]


def multiclass_batch(rows: int, seed: int, classes: int = 5) -> Batch:
    """Float64 logits twice too confident for labels drawn from softmax(logits / 2), a quarter ignored (-100)."""
    generator = torch.Generator().manual_seed(seed)
    logits = 2 * torch.randn(rows, classes, generator=generator, dtype=torch.float64)
    labels = torch.multinomial((logits / 2).softmax(dim=1), 1, generator=generator).squeeze(1)
    labels[::4] = -100
    return logits, labels


def multilabel_batch(rows: int, seed: int, labels: int = 3) -> Batch:
    generator = torch.Generator().manual_seed(seed)
    logits = 2 * torch.randn(rows, labels, generator=generator, dtype=torch.float64)
    return logits, (torch.rand(rows, labels, generator=generator, dtype=torch.float64) < logits.sigmoid()).long()


def _estimators_reference(preds: Tensor, target: Tensor) -> dict[str, Tensor]:
    histogram = confidence_histogram(preds, target, ignore_index=-100)
    smooth_ece, bandwidth = _smooth_calibration_error_compute(histogram)
    return {
        "adaptive_ece": adaptive_calibration_error(preds, target, ignore_index=-100),
        "adaptive_ece_bound": equal_mass_error_bound(histogram, 15),
        "adaptive_rmsce": adaptive_calibration_error(preds, target, norm="l2", ignore_index=-100),
        "debiased_rmsce": debiased_calibration_error(preds, target, ignore_index=-100),
        "smooth_ece": smooth_ece,
        "smooth_ece_bandwidth": bandwidth,
    }


@dataclass(frozen=True)
class Case:
    name: str
    make_metric: Callable[[], Metric]
    make_batch: Callable[[int, int], Batch]
    one_shot: Callable[[Tensor, Tensor], Value]

    def __str__(self) -> str:
        return self.name


CASES = [
    Case(
        "adaptive",
        lambda: AdaptiveCalibrationError(ignore_index=-100),
        multiclass_batch,
        lambda p, t: adaptive_calibration_error(p, t, ignore_index=-100),
    ),
    Case(
        "adaptive_multilabel",
        lambda: AdaptiveCalibrationError(task="multilabel", num_labels=3, average="none", norm="l2"),
        multilabel_batch,
        lambda p, t: adaptive_calibration_error(p, t, task="multilabel", average="none", norm="l2"),
    ),
    Case(
        "debiased",
        lambda: DebiasedCalibrationError(ignore_index=-100),
        multiclass_batch,
        lambda p, t: debiased_calibration_error(p, t, ignore_index=-100),
    ),
    Case(
        "debiased_equal_width",
        lambda: DebiasedCalibrationError(binning="equal_width", n_bins=10, ignore_index=-100),
        multiclass_batch,
        lambda p, t: debiased_calibration_error(p, t, binning="equal_width", n_bins=10, ignore_index=-100),
    ),
    Case(
        "smooth",
        lambda: SmoothCalibrationError(ignore_index=-100),
        multiclass_batch,
        lambda p, t: smooth_calibration_error(p, t, ignore_index=-100),
    ),
    Case("estimators", lambda: CalibrationEstimators(ignore_index=-100), multiclass_batch, _estimators_reference),
    Case(
        "classwise",
        lambda: ClasswiseCalibrationError(num_classes=5, ignore_index=-100),
        multiclass_batch,
        lambda p, t: classwise_calibration_error(p, t, ignore_index=-100),
    ),
    Case(
        "temperature_scan",
        lambda: TemperatureScan(ignore_index=-100),
        multiclass_batch,
        lambda p, t: temperature_scan(p, t, ignore_index=-100),
    ),
    Case(
        "calibration_test",
        lambda: CalibrationTest(ignore_index=-100),
        multiclass_batch,
        lambda p, t: calibration_test(p, t, ignore_index=-100),
    ),
    Case(
        "bootstrap",
        lambda: BootstrapIntervals(num_replicates=50, ignore_index=-100),
        multiclass_batch,
        lambda p, t: bootstrap_intervals(p, t, num_replicates=50, ignore_index=-100),
    ),
]
CASES_BY_NAME = {case.name: case for case in CASES}


def assert_values_close(actual: Value, expected: Value, rtol: float, atol: float = 0.0) -> None:
    if isinstance(expected, dict):
        assert set(actual) == set(expected)
        for key in expected:
            torch.testing.assert_close(actual[key], expected[key], rtol=rtol, atol=atol, equal_nan=True, msg=key)
    else:
        torch.testing.assert_close(actual, expected, rtol=rtol, atol=atol, equal_nan=True)
