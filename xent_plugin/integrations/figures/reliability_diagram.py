"""Reliability diagram of a reliability table, drawn straight into a square image sized for MLflow's thumbnail.

MLflow shows a logged image as a thumbnail that fits 256 px (``mlflow.tracking.multimedia.COMPRESSED_IMAGE_SIZE``)
in the run's image card, behind its step slider and in fullscreen; a click on it opens the full-size file. The
diagram is a :data:`SIZE`-px square, so the thumbnail halves it exactly: text of 22-34 px stays 11-17 px there,
lines of 3-4 px stay visible, and there are few elements. Nothing is drawn over the data: the numbers and the
legend sit in a header above the panels.

It is drawn with Pillow's ``ImageDraw`` rather than matplotlib: the same few rectangles, lines and texts, with no
figure, no artists and no matplotlib import; drawing takes milliseconds. The text uses the DejaVu Sans that ships
with matplotlib, read as a file.
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from xent_plugin.functional._validation import check_choice
from xent_plugin.functional.debiased_calibration_error import BINNINGS
from xent_plugin.integrations.figures.reliability_columns import (
    ReliabilityTable,
    SmoothCurve,
    reliability_columns,
    smooth_curve_columns,
)

SIZE = 512
# Bins where accuracy is below the mean confidence, and those where it is at or above it.
OVER_CONFIDENT = (214, 39, 40)
UNDER_CONFIDENT = (31, 119, 180)
INK = (20, 20, 20)
BACKGROUND = (255, 255, 255)
_MUTED = (110, 110, 110)
_COUNT_BARS = (150, 150, 150)
_GRID = (225, 225, 225)
# The smoothed curve's band: ink at this opacity over whatever lies beneath, so a bar keeps its hue.
_BAND_ALPHA = 60
# The count axis starts at a quarter sample, so that a bin holding a single sample has a visible bar (at least
# 10 px of the 84 up to 10^4 samples).
_COUNT_FLOOR = 0.25


@dataclass(frozen=True)
class Panel:
    """A panel's pixel box; ``x(value)`` and ``y(fraction)`` map data in [0, 1] to pixels (y grows downwards)."""

    left: int
    top: int
    right: int
    bottom: int

    def x(self, value: float | np.ndarray) -> float | np.ndarray:
        return self.left + np.asarray(value) * (self.right - self.left)

    def y(self, fraction: float | np.ndarray) -> float | np.ndarray:
        return self.bottom - np.asarray(fraction) * (self.bottom - self.top)


# The header (numbers, title, two rows of legend) is fixed in height, so the panels never move.
CALIBRATION_PANEL = Panel(left=72, top=118, right=SIZE - 18, bottom=372)
COUNT_PANEL = Panel(left=72, top=386, right=SIZE - 18, bottom=470)


def reliability_diagram(
    table: ReliabilityTable,
    *,
    ece: float | None = None,
    title: str | None = None,
    smooth_curve: SmoothCurve | None = None,
    binning: str = "equal_width",
) -> Image.Image:
    """Accuracy against confidence per bin (top) over the number of samples per bin on a log scale (bottom).

    The top panel has one bar per non-empty bin spanning its edges, up to the bin's accuracy: red
    (:data:`OVER_CONFIDENT`) where the accuracy is below the bin's mean confidence, blue
    (:data:`UNDER_CONFIDENT`) where it is not; and the dashed diagonal of perfect calibration. Empty bins are not
    drawn; equal-mass bins draw as bars of varying width.

    When ``table`` has ``accuracy_lower`` and ``accuracy_upper`` (as
    :meth:`~xent_plugin.metrics.bootstrap.BootstrapIntervals.reliability_table` gives them), each bin gets a
    whisker over that interval at its mean confidence. With ``smooth_curve`` the top panel also has the smoothed
    accuracy as a line over its band (a translucent shade), both broken where the curve is NaN.

    The bottom panel has the count of each bin on a log scale, so that the bins of a handful of samples behind a
    tall accuracy bar stay visible next to bins of thousands. For ``binning="equal_mass"``, whose bins hold
    about equal counts, it shows the density ``count / (total * width)`` instead, on the same log scale.

    The header holds, largest, the ECE (and the smoothed ECE), then ``title``, then the legend: only the
    elements drawn.

    Args:
        table: per-bin ``lower``, ``upper``, ``count``, ``confidence`` and ``accuracy`` (NaN where empty), and
            optionally ``accuracy_lower``/``accuracy_upper`` and ``confidence_lower``/``confidence_upper``.
        ece: the expected calibration error, printed when given.
        title: printed beside the numbers, e.g. the key and the step.
        smooth_curve: ``confidence`` grid, ``accuracy``, band ``lower``/``upper``, and optionally
            ``smooth_ece``, as :meth:`~xent_plugin.metrics.calibration_estimators.CalibrationEstimators.smooth_curve`
            returns them.
        binning: how ``table``'s bins were cut, ``"equal_width"`` or ``"equal_mass"``.

    Returns:
        An RGB image of :data:`SIZE` × :data:`SIZE` pixels.

    Example:
        >>> table = {"lower": [0.0, 0.5], "upper": [0.5, 1.0], "count": [0.0, 4.0],
        ...          "confidence": [float("nan"), 0.9], "accuracy": [float("nan"), 0.75]}
        >>> image = reliability_diagram(table, ece=0.15, title="val/reliability, step 7")
        >>> image.size, image.mode
        ((512, 512), 'RGB')
        >>> x, y = CALIBRATION_PANEL.x(0.75), CALIBRATION_PANEL.y(0.5)
        >>> image.getpixel((int(x), int(y))) == OVER_CONFIDENT   # the bin of 0.9 confidence is 75% right
        True
    """
    check_choice("binning", binning, BINNINGS)
    columns = reliability_columns(table)
    curve = None if smooth_curve is None else smooth_curve_columns(smooth_curve)
    filled = columns["count"] > 0
    bins = {name: column[filled] for name, column in columns.items()}
    has_intervals = "accuracy_lower" in bins

    image = Image.new("RGB", (SIZE, SIZE), BACKGROUND)
    draw = ImageDraw.Draw(image)
    _draw_axes(draw)
    _draw_calibration_bars(draw, bins)
    _draw_diagonal(draw, CALIBRATION_PANEL)
    if has_intervals:
        _draw_whiskers(draw, bins)
    if curve is not None:
        image = _draw_smooth_curve(image, curve)
        draw = ImageDraw.Draw(image)
    _draw_counts(draw, bins, binning)
    _draw_header(draw, summary(ece, curve, binning), title, _legend(has_intervals, curve is not None))
    return image


def summary(ece: float | None, curve: dict[str, np.ndarray | float] | None, binning: str = "equal_width") -> str:
    """The numbers the header prints, largest: the ECE, naming equal-mass bins, and the smoothed ECE.

    Example:
        >>> summary(0.03125, {"smooth_ece": 0.02}, "equal_mass")
        'equal-mass ECE 0.0312 · smECE 0.0200'
    """
    parts = []
    if ece is not None:
        parts.append(f"{'equal-mass ECE' if binning == 'equal_mass' else 'ECE'} {ece:.4f}")
    if curve is not None and "smooth_ece" in curve:
        parts.append(f"smECE {curve['smooth_ece']:.4f}")
    return " · ".join(parts)


# ---- the panels -------------------------------------------------------------------------------------------


def _draw_axes(draw: ImageDraw.ImageDraw) -> None:
    tick_font = _font(22)
    for panel in (CALIBRATION_PANEL, COUNT_PANEL):
        draw.rectangle((panel.left, panel.top, panel.right, panel.bottom), outline=_MUTED, width=2)
    middle = CALIBRATION_PANEL.y(0.5)
    draw.line((CALIBRATION_PANEL.left, middle, CALIBRATION_PANEL.right, middle), fill=_GRID, width=2)
    for fraction, label in ((0.0, "0"), (0.5, ".5"), (1.0, "1")):
        draw.text(
            (CALIBRATION_PANEL.left - 8, CALIBRATION_PANEL.y(fraction)), label, font=tick_font, fill=INK, anchor="rm"
        )
    _vertical_text(draw, "accuracy", (18, (CALIBRATION_PANEL.top + CALIBRATION_PANEL.bottom) / 2), _font(24))
    # The confidence axis: its ends and its name share one row under the count panel.
    row = COUNT_PANEL.bottom + 8
    draw.text((COUNT_PANEL.x(0.0), row), "0", font=tick_font, fill=INK, anchor="lt")
    draw.text((COUNT_PANEL.x(1.0), row), "1", font=tick_font, fill=INK, anchor="rt")
    draw.text((COUNT_PANEL.x(0.5), row), "confidence", font=_font(24), fill=INK, anchor="mt")


def _draw_calibration_bars(draw: ImageDraw.ImageDraw, bins: dict[str, np.ndarray]) -> None:
    panel = CALIBRATION_PANEL
    lefts, rights = panel.x(bins["lower"]), panel.x(bins["upper"])
    tops = panel.y(np.clip(bins["accuracy"], 0.0, 1.0))
    over = bins["accuracy"] < bins["confidence"]
    for left, right, top, is_over in zip(lefts, rights, tops, over, strict=True):
        colour = OVER_CONFIDENT if is_over else UNDER_CONFIDENT
        # The white outline keeps neighbouring bars apart at thumbnail size.
        draw.rectangle((left, top, right, panel.bottom), fill=colour, outline=BACKGROUND, width=1)


def _draw_diagonal(draw: ImageDraw.ImageDraw, panel: Panel) -> None:
    dashes = 24
    for index in range(0, dashes, 2):
        start, end = index / dashes, (index + 1) / dashes
        draw.line((panel.x(start), panel.y(start), panel.x(end), panel.y(end)), fill=INK, width=3)


def _draw_whiskers(draw: ImageDraw.ImageDraw, bins: dict[str, np.ndarray]) -> None:
    panel = CALIBRATION_PANEL
    lower, upper = bins["accuracy_lower"], bins["accuracy_upper"]
    known = np.isfinite(lower) & np.isfinite(upper)
    for x, low, high in zip(panel.x(bins["confidence"][known]), lower[known], upper[known], strict=True):
        y_low, y_high = panel.y(np.clip(low, 0, 1)), panel.y(np.clip(high, 0, 1))
        draw.line((x, y_low, x, y_high), fill=INK, width=3)
        for y in (y_low, y_high):
            draw.line((x - 6, y, x + 6, y), fill=INK, width=3)


def _draw_smooth_curve(image: Image.Image, curve: dict[str, np.ndarray | float]) -> Image.Image:
    panel = CALIBRATION_PANEL
    band = Image.new("RGBA", image.size, (0, 0, 0, 0))
    band_draw = ImageDraw.Draw(band)
    x = panel.x(curve["confidence"])
    lower, upper = panel.y(np.clip(curve["lower"], 0, 1)), panel.y(np.clip(curve["upper"], 0, 1))
    for run in _finite_runs(np.isfinite(curve["lower"]) & np.isfinite(curve["upper"])):
        outline = list(zip(x[run], upper[run], strict=True)) + list(zip(x[run][::-1], lower[run][::-1], strict=True))
        if len(outline) >= 3:
            band_draw.polygon(outline, fill=(*INK, _BAND_ALPHA))
    image = Image.alpha_composite(image.convert("RGBA"), band).convert("RGB")
    draw = ImageDraw.Draw(image)
    accuracy = panel.y(np.clip(curve["accuracy"], 0, 1))
    for run in _finite_runs(np.isfinite(curve["accuracy"])):
        draw.line(list(zip(x[run], accuracy[run], strict=True)), fill=INK, width=4, joint="curve")
    return image


def _finite_runs(finite: np.ndarray) -> list[np.ndarray]:
    """The index ranges of the consecutive True stretches of ``finite``, so a curve breaks where it is NaN."""
    edges = np.flatnonzero(np.diff(np.concatenate(([0], finite.astype(np.int8), [0]))))
    return [np.arange(start, stop) for start, stop in zip(edges[::2], edges[1::2], strict=True)]


def _draw_counts(draw: ImageDraw.ImageDraw, bins: dict[str, np.ndarray], binning: str) -> None:
    panel = COUNT_PANEL
    count, width = bins["count"], bins["upper"] - bins["lower"]
    if binning == "equal_mass":
        heights, quantity = count / (count.sum() * width), "density"
    else:
        heights, quantity = count, "count"
    floor = _COUNT_FLOOR if binning == "equal_width" else float(np.min(heights, initial=1.0)) / 2
    top = max(10.0 * floor / _COUNT_FLOOR, float(np.max(heights, initial=1.0))) * 1.5
    span = math.log10(top / floor)
    tick_font = _font(20)
    decades = range(math.ceil(math.log10(floor)), math.floor(math.log10(top)) + 1)
    labelled = list(decades)[:: max(1, math.ceil(len(decades) / 3))]
    for decade in decades:
        y = panel.y((decade - math.log10(floor)) / span)
        draw.line((panel.left + 2, y, panel.right - 2, y), fill=_GRID, width=1)
        if decade in labelled:
            draw.text((panel.left - 8, y), _power_of_ten(decade), font=tick_font, fill=INK, anchor="rm")
    for left, right, height in zip(panel.x(bins["lower"]), panel.x(bins["upper"]), heights, strict=True):
        draw.rectangle(
            (left, panel.y(math.log10(height / floor) / span), right, panel.bottom),
            fill=_COUNT_BARS,
            outline=BACKGROUND,
            width=1,
        )
    _vertical_text(draw, quantity, (18, (panel.top + panel.bottom) / 2), _font(20))


def _power_of_ten(decade: int) -> str:
    if 0 <= decade < 3:
        return str(10**decade)
    if 3 <= decade < 6:
        return f"{10 ** (decade - 3)}k"
    if 6 <= decade < 9:
        return f"{10 ** (decade - 6)}M"
    return f"1e{decade}"


# ---- the header -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _LegendEntry:
    label: str
    colour: tuple[int, int, int]
    kind: str  # "patch", "whisker" or "line"


def _legend(has_intervals: bool, has_curve: bool) -> list[_LegendEntry]:
    entries = [
        _LegendEntry("over-confident", OVER_CONFIDENT, "patch"),
        _LegendEntry("under-confident", UNDER_CONFIDENT, "patch"),
    ]
    if has_intervals:
        entries.append(_LegendEntry("95% interval", INK, "whisker"))
    if has_curve:
        entries.append(_LegendEntry("smoothed", INK, "line"))
    return entries


def _draw_header(draw: ImageDraw.ImageDraw, numbers: str, title: str | None, legend: list[_LegendEntry]) -> None:
    left, right = 12, SIZE - 12
    title_font, legend_font = _font(22), _font(22)
    numbers_font = next(
        font
        for size in (34, 30, 26, 22)
        if draw.textlength(numbers, font=(font := _font(size, bold=True))) <= right - left or size == 22
    )
    if numbers:
        draw.text((left, 8), numbers, font=numbers_font, fill=INK, anchor="lt")
    if title:
        # Beside the numbers when both fit, else on the numbers' row alone.
        room = right - left - (draw.textlength(numbers, font=numbers_font) + 16 if numbers else 0)
        text = title if draw.textlength(title, font=title_font) <= room else _shorten(draw, title, title_font, room)
        draw.text((right, 18), text, font=title_font, fill=_MUTED, anchor="rt")
    x, y = left, 56
    for entry in legend:
        width = 34 + draw.textlength(entry.label, font=legend_font)
        if x + width > right:
            x, y = left, y + 30
        _legend_key(draw, entry, x, y)
        draw.text((x + 30, y + 11), entry.label, font=legend_font, fill=INK, anchor="lm")
        x += width + 18


def _legend_key(draw: ImageDraw.ImageDraw, entry: _LegendEntry, x: float, y: float) -> None:
    if entry.kind == "patch":
        draw.rectangle((x, y, x + 22, y + 22), fill=entry.colour)
    elif entry.kind == "line":
        draw.rectangle((x, y + 3, x + 22, y + 19), fill=_blend(entry.colour, _BAND_ALPHA))
        draw.line((x, y + 11, x + 22, y + 11), fill=entry.colour, width=4)
    else:
        draw.line((x + 11, y, x + 11, y + 22), fill=entry.colour, width=3)
        for cap in (y + 1, y + 21):
            draw.line((x + 5, cap, x + 17, cap), fill=entry.colour, width=3)


def _blend(colour: tuple[int, int, int], alpha: int) -> tuple[int, int, int]:
    return tuple(round(c * alpha / 255 + b * (1 - alpha / 255)) for c, b in zip(colour, BACKGROUND, strict=True))


def _shorten(draw: ImageDraw.ImageDraw, text: str, font: ImageFont.FreeTypeFont, room: float) -> str:
    while text and draw.textlength(text + "…", font=font) > room:
        text = text[:-1]
    return text + "…" if text else ""


def _vertical_text(
    draw: ImageDraw.ImageDraw, text: str, centre: tuple[float, float], font: ImageFont.FreeTypeFont
) -> None:
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    label = Image.new("L", (right - left, bottom - top), 0)
    ImageDraw.Draw(label).text((-left, -top), text, font=font, fill=255)
    label = label.rotate(90, expand=True)
    x, y = round(centre[0] - label.width / 2), round(centre[1] - label.height / 2)
    draw.bitmap((x, y), label, fill=INK)


@cache
def _font(size: int, bold: bool = False) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(_dejavu_sans(bold)), size)


def _dejavu_sans(bold: bool) -> Path:
    # matplotlib ships DejaVu Sans; its package directory is found without importing matplotlib.
    spec = importlib.util.find_spec("matplotlib")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(
            "The reliability diagram uses the DejaVu Sans font that matplotlib ships; install matplotlib."
        )
    return Path(spec.origin).parent / "mpl-data" / "fonts" / "ttf" / f"DejaVuSans{'-Bold' if bold else ''}.ttf"
