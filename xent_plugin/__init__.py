"""xent_plugin: cross-entropy, KL and calibration metrics for PyTorch Lightning, logged to MLflow.

Importing the package loads the metrics, which need only torch and torchmetrics. ``XentMonitor`` and
``ResilientMLFlowLogger`` are loaded on first use (PEP 562), so a metrics user never pays for Lightning, MLflow
or Hydra. (torchmetrics itself imports matplotlib for its ``plot()`` when matplotlib is installed; this package
adds no import of its own to that, and its metrics run in an environment without matplotlib.)
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from xent_plugin.integrations.lightning import XentMonitor
    from xent_plugin.integrations.mlflow import ResilientMLFlowLogger

_LAZY = {
    "XentMonitor": "xent_plugin.integrations.lightning",
    "ResilientMLFlowLogger": "xent_plugin.integrations.mlflow",
}

__all__ = [
    "BinaryCrossEntropy",
    "BrierScore",
    "CalibrationError",
    "CrossEntropy",
    "Entropy",
    "KLDivergence",
    "Perplexity",
    "ResilientMLFlowLogger",
    "XentMetrics",
    "XentMonitor",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'xent_plugin' has no attribute {name!r}")
