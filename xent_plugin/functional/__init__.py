"""One-shot functional metrics; the stateful classes in :mod:`xent_plugin.metrics` accumulate the same sums."""

from xent_plugin.functional.binary_cross_entropy import binary_cross_entropy
from xent_plugin.functional.brier_score import brier_score
from xent_plugin.functional.calibration_error import calibration_error, reliability_table
from xent_plugin.functional.cross_entropy import cross_entropy
from xent_plugin.functional.entropy import entropy
from xent_plugin.functional.kl_divergence import kl_divergence
from xent_plugin.functional.perplexity import perplexity
from xent_plugin.functional.sigmoid_stats import BinaryStats, binary_stats
from xent_plugin.functional.softmax_stats import SufficientStats, reliability_bins, sufficient_stats
from xent_plugin.functional.task_stats import task_stats

__all__ = [
    "BinaryStats",
    "SufficientStats",
    "binary_cross_entropy",
    "binary_stats",
    "brier_score",
    "calibration_error",
    "cross_entropy",
    "entropy",
    "kl_divergence",
    "perplexity",
    "reliability_bins",
    "reliability_table",
    "sufficient_stats",
    "task_stats",
]

# Calibration estimators beyond equal-width ECE, intervals and the temperature scan (issue 7).
from xent_plugin.functional.adaptive_calibration_error import (  # noqa: E402
    adaptive_calibration_error,
    equal_mass_bins,
    equal_mass_error_bound,
    equal_mass_reliability_table,
)
from xent_plugin.functional.bootstrap import bootstrap_intervals, poisson_weights  # noqa: E402
from xent_plugin.functional.classwise_calibration_error import (  # noqa: E402
    classwise_bins,
    classwise_calibration_error,
)
from xent_plugin.functional.confidence_histogram import FINE_CELLS, confidence_histogram  # noqa: E402
from xent_plugin.functional.debiased_calibration_error import (  # noqa: E402
    debiased_calibration_error,
    debiased_squared_error,
)
from xent_plugin.functional.smooth_calibration_error import (  # noqa: E402
    smooth_calibration_bandwidth,
    smooth_calibration_error,
    smooth_calibration_error_at,
    smooth_reliability_curve,
)
from xent_plugin.functional.temperature_scan import default_temperatures, temperature_scan  # noqa: E402

__all__ += [
    "FINE_CELLS",
    "adaptive_calibration_error",
    "bootstrap_intervals",
    "classwise_bins",
    "classwise_calibration_error",
    "confidence_histogram",
    "debiased_calibration_error",
    "debiased_squared_error",
    "default_temperatures",
    "equal_mass_bins",
    "equal_mass_error_bound",
    "equal_mass_reliability_table",
    "poisson_weights",
    "smooth_calibration_bandwidth",
    "smooth_calibration_error",
    "smooth_calibration_error_at",
    "smooth_reliability_curve",
    "temperature_scan",
]
