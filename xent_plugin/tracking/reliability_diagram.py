"""Reliability diagram of a reliability table, and its conversion to an image array for MLflow.

Figures are built with :class:`matplotlib.figure.Figure` and drawn on an Agg canvas, never through
``matplotlib.pyplot``: pyplot keeps global figure state and picks a GUI backend, whereas a bare ``Figure`` is
safe to render from a background upload thread on a machine without a display, and needs no ``plt.close``.
"""

from __future__ import annotations

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from xent_plugin.tracking.reliability_columns import ReliabilityTable, reliability_columns


def reliability_diagram(
    table: ReliabilityTable,
    *,
    ece: float | None = None,
    title: str | None = None,
) -> Figure:
    """Accuracy against confidence per bin (top) over the histogram of confidences (bottom).

    The top panel has one bar per non-empty bin spanning its edges, up to the bin's accuracy (label
    ``"accuracy"``), the diagonal of perfect calibration, and a hatched red bar from the accuracy to the bin's
    mean confidence (label ``"gap"``): above the accuracy bar where the model is over-confident, below its top
    where it is under-confident. The bottom panel has the number of samples per bin (label ``"count"``). Empty
    bins are not drawn.

    Args:
        table: per-bin ``lower``, ``upper``, ``count``, ``confidence`` and ``accuracy`` (NaN where empty).
        ece: the expected calibration error, printed in a box when given.
        title: the figure title.

    Example:
        >>> table = {"lower": [0.0, 0.5], "upper": [0.5, 1.0], "count": [0.0, 4.0],
        ...          "confidence": [float("nan"), 0.9], "accuracy": [float("nan"), 0.75]}
        >>> fig = reliability_diagram(table, ece=0.15)
        >>> [float(bar.get_height()) for bar in fig.axes[0].containers[0]]
        [0.75]
    """
    columns = reliability_columns(table)
    filled = columns["count"] > 0
    lower, upper = columns["lower"][filled], columns["upper"][filled]
    width = upper - lower
    accuracy, confidence = columns["accuracy"][filled], columns["confidence"][filled]

    fig = Figure(figsize=(5.0, 6.0), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    calibration_axes, histogram_axes = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1))

    calibration_axes.bar(
        lower, accuracy, width=width, align="edge", color="tab:blue", edgecolor="black", label="accuracy"
    )
    calibration_axes.bar(
        lower,
        confidence - accuracy,
        bottom=accuracy,
        width=width,
        align="edge",
        color="tab:red",
        alpha=0.3,
        edgecolor="tab:red",
        hatch="//",
        label="gap",
    )
    calibration_axes.plot([0, 1], [0, 1], linestyle="--", color="gray", label="perfect calibration")
    calibration_axes.set(xlim=(0, 1), ylim=(0, 1), ylabel="accuracy", title=title)
    calibration_axes.legend(loc="lower right", fontsize="small")
    if ece is not None:
        calibration_axes.text(
            0.04,
            0.96,
            f"ECE = {ece:.4f}",
            transform=calibration_axes.transAxes,
            verticalalignment="top",
            bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.9},
        )

    histogram_axes.bar(
        lower,
        columns["count"][filled],
        width=width,
        align="edge",
        color="gray",
        edgecolor="black",
        label="count",
    )
    histogram_axes.set(xlim=(0, 1), xlabel="confidence", ylabel="count")
    return fig


def figure_to_image(fig: Figure) -> np.ndarray:
    """Renders ``fig`` into an (height, width, 3) uint8 RGB array, a form ``MlflowClient.log_image`` accepts.

    Example:
        >>> fig = Figure(figsize=(2, 1), dpi=50)
        >>> image = figure_to_image(fig)
        >>> image.shape, image.dtype
        ((50, 100, 3), dtype('uint8'))
    """
    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()
