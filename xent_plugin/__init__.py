"""xent_plugin: cross-entropy, KL and calibration metrics for PyTorch Lightning, logged to MLflow."""

from xent_plugin.callbacks import XentMonitor
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

__all__ = [
    "BinaryCrossEntropy",
    "BrierScore",
    "CalibrationError",
    "CrossEntropy",
    "Entropy",
    "KLDivergence",
    "Perplexity",
    "XentMetrics",
    "XentMonitor",
]
__version__ = "0.1.0"
