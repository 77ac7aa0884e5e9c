"""Reliability diagram of a reliability table, and its conversion to an image array for MLflow.

Figures are built with :class:`matplotlib.figure.Figure` and drawn on an Agg canvas, never through
``matplotlib.pyplot``: pyplot keeps global figure state and picks a GUI backend, whereas a bare ``Figure`` is
safe to render from a background upload thread on a machine without a display, and needs no ``plt.close``.
"""

from __future__ import annotations

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from xent_plugin.functional._validation import check_choice
from xent_plugin.functional.debiased_calibration_error import BINNINGS
from xent_plugin.integrations.figures.reliability_columns import (
    ReliabilityTable,
    SmoothCurve,
    reliability_columns,
    smooth_curve_columns,
)


def reliability_diagram(
    table: ReliabilityTable,
    *,
    ece: float | None = None,
    title: str | None = None,
    smooth_curve: SmoothCurve | None = None,
    binning: str = "equal_width",
) -> Figure:
    """Accuracy against confidence per bin (top) over the distribution of confidences (bottom).

    The top panel has one bar per non-empty bin spanning its edges, up to the bin's accuracy (label
    ``"accuracy"``), the diagonal of perfect calibration, and a hatched red bar from the accuracy to the bin's
    mean confidence (label ``"gap"``): above the accuracy bar where the model is over-confident, below its top
    where it is under-confident. Empty bins are not drawn. Equal-mass bins draw as bars of varying width.

    When ``table`` has ``accuracy_lower`` and ``accuracy_upper`` (as
    :meth:`~xent_plugin.metrics.bootstrap.BootstrapIntervals.reliability_table` gives them), each bin gets a
    vertical whisker over that interval at its mean confidence (label ``"accuracy interval"``). The interval of
    the mean confidence is not drawn: it lies within the bin and is far narrower than the accuracy's.

    With ``smooth_curve`` the top panel also has the smoothed accuracy as a line (label ``"smoothed
    accuracy"``) over its band as a translucent fill (label ``"smoothed band"``), both broken where the curve is
    NaN, and its ``smooth_ece`` is printed.

    The bottom panel has the number of samples per bin (label ``"count"``) for ``binning="equal_width"``. For
    ``"equal_mass"`` every bin holds about the same count, so it shows the density ``count / (total * width)``
    instead (label ``"density"``), which keeps the bars' areas proportional to their counts, and the printed ECE
    names the binning.

    The legend, with the printed numbers as its title, sits in the upper left, or in the lower right when the
    model is under-confident overall (total accuracy above total confidence) and the bars rise above the
    diagonal.

    Args:
        table: per-bin ``lower``, ``upper``, ``count``, ``confidence`` and ``accuracy`` (NaN where empty), and
            optionally ``accuracy_lower``/``accuracy_upper`` and ``confidence_lower``/``confidence_upper``.
        ece: the expected calibration error, printed when given.
        title: the figure title.
        smooth_curve: ``confidence`` grid, ``accuracy``, band ``lower``/``upper``, and optionally
            ``smooth_ece`` and ``bandwidth``, as
            :meth:`~xent_plugin.metrics.calibration_estimators.CalibrationEstimators.smooth_curve` returns them.
        binning: how ``table``'s bins were cut, ``"equal_width"`` or ``"equal_mass"``.

    Example:
        >>> table = {"lower": [0.0, 0.5], "upper": [0.5, 1.0], "count": [0.0, 4.0],
        ...          "confidence": [float("nan"), 0.9], "accuracy": [float("nan"), 0.75]}
        >>> fig = reliability_diagram(table, ece=0.15)
        >>> [float(bar.get_height()) for bar in fig.axes[0].containers[0]]
        [0.75]
        >>> curve = {"confidence": [0.0, 0.5, 1.0], "accuracy": [0.1, 0.4, 0.8],
        ...          "lower": [0.0, 0.3, 0.7], "upper": [0.3, 0.5, 0.9], "smooth_ece": 0.12}
        >>> fig = reliability_diagram(table, ece=0.15, smooth_curve=curve)
        >>> print(fig.axes[0].get_legend().get_title().get_text())
        ECE = 0.1500
        smECE = 0.1200
    """
    check_choice("binning", binning, BINNINGS)
    columns = reliability_columns(table)
    curve = None if smooth_curve is None else smooth_curve_columns(smooth_curve)
    filled = columns["count"] > 0
    lower, upper = columns["lower"][filled], columns["upper"][filled]
    width = upper - lower
    count, accuracy, confidence = columns["count"][filled], columns["accuracy"][filled], columns["confidence"][filled]

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
    if "accuracy_lower" in columns:
        _draw_whiskers(
            calibration_axes, confidence, columns["accuracy_lower"][filled], columns["accuracy_upper"][filled]
        )
    if curve is not None:
        _draw_smooth_curve(calibration_axes, curve)
    calibration_axes.set(xlim=(0, 1), ylim=(0, 1), ylabel="accuracy", title=title)
    over_confident = np.sum(count * (confidence - accuracy)) >= 0
    _draw_legend(
        calibration_axes, "\n".join(_summary_lines(ece, curve, binning)) or None, over_confident=over_confident
    )

    if binning == "equal_mass":
        heights, quantity = count / (count.sum() * width), "density"
    else:
        heights, quantity = count, "count"
    histogram_axes.bar(lower, heights, width=width, align="edge", color="gray", edgecolor="black", label=quantity)
    histogram_axes.set(xlim=(0, 1), xlabel="confidence", ylabel=quantity)
    return fig


def _draw_whiskers(axes: Axes, confidence: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> None:
    known = np.isfinite(lower) & np.isfinite(upper)
    # Drawn as a symmetric error bar about the interval's midpoint: a percentile interval need not contain the
    # point estimate, and errorbar rejects the negative extents that an offset from the accuracy could give.
    axes.errorbar(
        confidence[known],
        (lower[known] + upper[known]) / 2,
        yerr=(upper[known] - lower[known]) / 2,
        fmt="none",
        ecolor="black",
        elinewidth=1.2,
        capsize=3,
        label="accuracy interval",
    )


def _draw_smooth_curve(axes: Axes, curve: dict[str, np.ndarray | float]) -> None:
    axes.fill_between(
        curve["confidence"],
        curve["lower"],
        curve["upper"],
        where=np.isfinite(curve["lower"]) & np.isfinite(curve["upper"]),
        color="tab:orange",
        alpha=0.3,
        linewidth=0,
        label="smoothed band",
    )
    axes.plot(curve["confidence"], curve["accuracy"], color="tab:orange", linewidth=2, label="smoothed accuracy")


# Legend entries in reading order: the bins, then the smooth curve, then the reference.
_LEGEND_ORDER = ("accuracy", "gap", "accuracy interval", "smoothed accuracy", "smoothed band", "perfect calibration")


def _draw_legend(axes: Axes, title: str | None, *, over_confident: bool) -> None:
    # The legend goes in the corner that the bins leave free: above the diagonal (upper left) when the model is
    # over-confident overall and the bars stay below it; over the bars' bodies (lower right), whose tops carry
    # the information, when it is under-confident and they rise above it. The numbers are the legend's title
    # so that the two never overlap.
    handles, labels = axes.get_legend_handles_labels()
    entries = sorted(zip(labels, handles, strict=True), key=lambda entry: _LEGEND_ORDER.index(entry[0]))
    axes.legend(
        [handle for _, handle in entries],
        [label for label, _ in entries],
        loc="upper left" if over_confident else "lower right",
        fontsize="small",
        title=title,
        title_fontsize="small",
        alignment="left",
        framealpha=0.9,
    )


def _summary_lines(ece: float | None, curve: dict[str, np.ndarray | float] | None, binning: str) -> list[str]:
    lines = []
    if ece is not None:
        lines.append(f"ECE (equal-mass bins) = {ece:.4f}" if binning == "equal_mass" else f"ECE = {ece:.4f}")
    if curve is not None and "smooth_ece" in curve:
        bandwidth = f" (σ = {curve['bandwidth']:.3f})" if "bandwidth" in curve else ""
        lines.append(f"smECE = {curve['smooth_ece']:.4f}{bandwidth}")
    return lines


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
