"""The reliability diagram and the table columns it is drawn from (drawn with Pillow, sized for MLflow's thumbnail)."""

from xent_plugin.integrations.figures.reliability_columns import (
    INTERVAL_COLUMNS,
    RELIABILITY_COLUMNS,
    ReliabilityTable,
    SmoothCurve,
    reliability_columns,
    smooth_curve_columns,
)
from xent_plugin.integrations.figures.reliability_diagram import reliability_diagram

__all__ = [
    "INTERVAL_COLUMNS",
    "RELIABILITY_COLUMNS",
    "ReliabilityTable",
    "SmoothCurve",
    "reliability_columns",
    "reliability_diagram",
    "smooth_curve_columns",
]
