"""One-shot functional metrics; the stateful classes in :mod:`xent_plugin.metrics` accumulate the same sums."""

from xent_plugin.functional.adaptive_calibration_error import (
    adaptive_calibration_error,
    equal_mass_bins,
    equal_mass_error_bound,
    equal_mass_reliability_table,
)
from xent_plugin.functional.binary_cross_entropy import binary_cross_entropy
from xent_plugin.functional.bootstrap import bootstrap_intervals, poisson_weights
from xent_plugin.functional.brier_score import brier_score
from xent_plugin.functional.calibration_error import calibration_error, reliability_table
from xent_plugin.functional.calibration_test import calibration_test
from xent_plugin.functional.classwise_calibration_error import classwise_bins, classwise_calibration_error
from xent_plugin.functional.confidence_histogram import FINE_CELLS, confidence_histogram
from xent_plugin.functional.cross_entropy import cross_entropy
from xent_plugin.functional.debiased_calibration_error import debiased_calibration_error, debiased_squared_error
from xent_plugin.functional.entropy import entropy
from xent_plugin.functional.kl_divergence import kl_divergence
from xent_plugin.functional.perplexity import perplexity
from xent_plugin.functional.sigmoid_stats import BinaryStats, binary_stats
from xent_plugin.functional.smooth_calibration_error import (
    smooth_calibration_bandwidth,
    smooth_calibration_error,
    smooth_calibration_error_at,
    smooth_reliability_curve,
)
from xent_plugin.functional.softmax_stats import SufficientStats, reliability_bins, sufficient_stats
from xent_plugin.functional.task_stats import task_stats
from xent_plugin.functional.temperature_scan import default_temperatures, temperature_scan

__all__ = [
    "BinaryStats",
    "FINE_CELLS",
    "SufficientStats",
    "adaptive_calibration_error",
    "binary_cross_entropy",
    "binary_stats",
    "bootstrap_intervals",
    "brier_score",
    "calibration_error",
    "calibration_test",
    "classwise_bins",
    "classwise_calibration_error",
    "confidence_histogram",
    "cross_entropy",
    "debiased_calibration_error",
    "debiased_squared_error",
    "default_temperatures",
    "entropy",
    "equal_mass_bins",
    "equal_mass_error_bound",
    "equal_mass_reliability_table",
    "kl_divergence",
    "perplexity",
    "poisson_weights",
    "reliability_bins",
    "reliability_table",
    "smooth_calibration_bandwidth",
    "smooth_calibration_error",
    "smooth_calibration_error_at",
    "smooth_reliability_curve",
    "sufficient_stats",
    "task_stats",
    "temperature_scan",
]
