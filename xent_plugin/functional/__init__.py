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
