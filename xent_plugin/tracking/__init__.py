"""Figures, tables and scalars that the Lightning callbacks send to MLflow, on rank 0 only."""

from xent_plugin.tracking.mlflow_artifacts import log_reliability_diagram, log_reliability_table, mlflow_key
from xent_plugin.tracking.mlflow_metrics import log_metrics_batched
from xent_plugin.tracking.reliability_columns import (
    INTERVAL_COLUMNS,
    RELIABILITY_COLUMNS,
    ReliabilityTable,
    SmoothCurve,
    reliability_columns,
    smooth_curve_columns,
)
from xent_plugin.tracking.reliability_diagram import figure_to_image, reliability_diagram
from xent_plugin.tracking.safe_mlflow_writer import SafeMlflowWriter

__all__ = [
    "INTERVAL_COLUMNS",
    "RELIABILITY_COLUMNS",
    "ReliabilityTable",
    "SafeMlflowWriter",
    "SmoothCurve",
    "figure_to_image",
    "log_metrics_batched",
    "log_reliability_diagram",
    "log_reliability_table",
    "mlflow_key",
    "reliability_columns",
    "reliability_diagram",
    "smooth_curve_columns",
]
