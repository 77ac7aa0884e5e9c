"""Stateful torchmetrics-style metrics with fixed-size float64 state and one all-reduce per sync."""

from xent_plugin.metrics.base import SummedStateMetric
from xent_plugin.metrics.binary_cross_entropy import BinaryCrossEntropy
from xent_plugin.metrics.bootstrap import BootstrapIntervals
from xent_plugin.metrics.brier_score import BrierScore
from xent_plugin.metrics.calibration_error import CalibrationError
from xent_plugin.metrics.calibration_estimators import (
    AdaptiveCalibrationError,
    CalibrationEstimators,
    ClasswiseCalibrationError,
    ConfidenceHistogramMetric,
    DebiasedCalibrationError,
    SmoothCalibrationError,
)
from xent_plugin.metrics.calibration_test import CalibrationTest
from xent_plugin.metrics.cross_entropy import CrossEntropy, Perplexity
from xent_plugin.metrics.entropy import Entropy
from xent_plugin.metrics.kl_divergence import KLDivergence
from xent_plugin.metrics.task_metric import TaskMetric
from xent_plugin.metrics.temperature_scan import TemperatureScan
from xent_plugin.metrics.xent_metrics import XentMetrics

__all__ = [
    "AdaptiveCalibrationError",
    "BinaryCrossEntropy",
    "BootstrapIntervals",
    "BrierScore",
    "CalibrationError",
    "CalibrationEstimators",
    "CalibrationTest",
    "ClasswiseCalibrationError",
    "ConfidenceHistogramMetric",
    "CrossEntropy",
    "DebiasedCalibrationError",
    "Entropy",
    "KLDivergence",
    "Perplexity",
    "SmoothCalibrationError",
    "SummedStateMetric",
    "TaskMetric",
    "TemperatureScan",
    "XentMetrics",
]
