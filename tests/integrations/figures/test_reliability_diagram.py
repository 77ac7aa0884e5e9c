import math

import numpy as np
import pytest
import torch
from mlflow.tracking.multimedia import compress_image_size

from xent_plugin.integrations.figures.reliability_diagram import (
    BACKGROUND,
    CALIBRATION_PANEL,
    COUNT_PANEL,
    INK,
    OVER_CONFIDENT,
    SIZE,
    UNDER_CONFIDENT,
    Panel,
    reliability_diagram,
    summary,
)
from xent_plugin.metrics.bootstrap import BootstrapIntervals
from xent_plugin.metrics.calibration_estimators import CalibrationEstimators

COUNT_BARS = (150, 150, 150)


def colour_at(image, panel: Panel, x: float, y: float) -> tuple[int, int, int]:
    return image.getpixel((round(float(panel.x(x))), round(float(panel.y(y)))))


def bar_top(image, panel: Panel, x: float, colours) -> int:
    """The highest pixel row of the column at ``x`` that has one of ``colours``, inside ``panel``."""
    column = round(float(panel.x(x)))
    rows = [row for row in range(panel.top + 2, panel.bottom - 1) if image.getpixel((column, row)) in colours]
    return min(rows)


def pixels_of(image, colour, box: tuple[int, int, int, int]) -> int:
    region = np.asarray(image.crop(box))
    return int(np.all(region == colour, axis=-1).sum())


HEADER = (0, 0, SIZE, CALIBRATION_PANEL.top - 2)


def test_image_is_a_square_that_mlflows_thumbnail_halves(table):
    image = reliability_diagram(table, ece=0.1)
    assert (image.mode, image.size) == ("RGB", (SIZE, SIZE))
    assert compress_image_size(image).size == (SIZE // 2, SIZE // 2) == (256, 256)


def test_each_filled_bin_is_a_bar_up_to_its_accuracy(table):
    image = reliability_diagram(table)
    for lower, upper, accuracy in ((0.2, 0.4, 0.5), (0.6, 0.8, 1.0), (0.8, 1.0, 0.5)):
        top = bar_top(image, CALIBRATION_PANEL, lower + 0.25 * (upper - lower), (OVER_CONFIDENT, UNDER_CONFIDENT))
        assert abs(top - CALIBRATION_PANEL.y(accuracy)) <= 2


def test_bars_are_red_where_over_confident_and_blue_where_under(table):
    image = reliability_diagram(table)
    # Bins of mean confidence 0.325 and 0.725 are right 50% and 100% of the time; the bin of 0.925, 50%.
    assert colour_at(image, CALIBRATION_PANEL, 0.25, 0.1) == UNDER_CONFIDENT
    assert colour_at(image, CALIBRATION_PANEL, 0.65, 0.1) == UNDER_CONFIDENT
    assert colour_at(image, CALIBRATION_PANEL, 0.85, 0.1) == OVER_CONFIDENT


def test_empty_bins_are_not_drawn(table):
    image = reliability_diagram(table)
    for x in (0.15, 0.45):
        assert colour_at(image, CALIBRATION_PANEL, x, 0.02) == BACKGROUND
        assert colour_at(image, COUNT_PANEL, x, 0.02) == BACKGROUND


def test_counts_are_on_a_log_scale_where_a_single_sample_stays_visible():
    table = {
        "lower": [0.6, 0.7, 0.8, 0.9],
        "upper": [0.7, 0.8, 0.9, 1.0],
        "count": [1.0, 10.0, 100.0, 10000.0],
        "confidence": [0.65, 0.75, 0.85, 0.95],
        "accuracy": [1.0, 0.8, 0.85, 0.97],
    }
    image = reliability_diagram(table)
    heights = [COUNT_PANEL.bottom - bar_top(image, COUNT_PANEL, x, (COUNT_BARS,)) for x in (0.65, 0.75, 0.85, 0.95)]
    # Half of this is what MLflow's 256-px thumbnail shows.
    assert heights[0] >= 6
    decade = heights[2] - heights[1]
    assert abs((heights[1] - heights[0]) - decade) <= 2
    assert abs((heights[3] - heights[2]) - 2 * decade) <= 2


def test_the_legend_shows_both_colours_above_the_panels_even_when_one_kind_of_bin_is_drawn():
    table = {"lower": [0.5], "upper": [1.0], "count": [5.0], "confidence": [0.9], "accuracy": [0.6]}
    image = reliability_diagram(table, ece=0.3)
    assert pixels_of(image, OVER_CONFIDENT, HEADER) > 100
    assert pixels_of(image, UNDER_CONFIDENT, HEADER) > 100


def test_the_numbers_and_the_title_are_printed_in_the_header(table):
    bare = pixels_of(reliability_diagram(table), INK, HEADER)
    with_ece = pixels_of(reliability_diagram(table, ece=0.0123), INK, HEADER)
    with_both = pixels_of(reliability_diagram(table, ece=0.0123, title="val/reliability, step 3"), INK, HEADER)
    assert bare < with_ece
    assert reliability_diagram(table, ece=0.0123) != reliability_diagram(table, ece=0.0123, title="val, step 3")
    assert with_both >= with_ece


def test_summary_is_the_ece_and_names_equal_mass_bins_and_the_smoothed_ece():
    assert summary(0.0123, None) == "ECE 0.0123"
    assert summary(None, None) == ""
    assert summary(0.1, None, "equal_mass") == "equal-mass ECE 0.1000"
    assert summary(0.1, {"smooth_ece": 0.0456}) == "ECE 0.1000 · smECE 0.0456"
    assert summary(None, {"smooth_ece": 0.0456}) == "smECE 0.0456"


# ---- per-bin intervals ------------------------------------------------------------------------------------


def test_whiskers_span_each_filled_bins_accuracy_interval_at_its_mean_confidence(interval_table):
    image = reliability_diagram(interval_table)
    # The last bin's interval, [0.55, 0.8], excludes its accuracy of 0.5 and is still drawn as given.
    assert colour_at(image, CALIBRATION_PANEL, 0.925, 0.7) == INK
    assert colour_at(image, CALIBRATION_PANEL, 0.925, 0.85) == BACKGROUND
    assert colour_at(image, CALIBRATION_PANEL, 0.325, 0.8) == INK
    assert colour_at(image, CALIBRATION_PANEL, 0.325, 0.95) == BACKGROUND


def test_bins_whose_interval_is_unknown_get_no_whisker(interval_table):
    interval_table["accuracy_lower"][3] = interval_table["accuracy_upper"][3] = float("nan")
    image = reliability_diagram(interval_table)
    assert colour_at(image, CALIBRATION_PANEL, 0.725, 0.65) == UNDER_CONFIDENT
    assert colour_at(image, CALIBRATION_PANEL, 0.925, 0.7) == INK


def test_no_whiskers_without_interval_columns(table):
    assert colour_at(reliability_diagram(table), CALIBRATION_PANEL, 0.925, 0.7) == BACKGROUND


# ---- smoothed curve ---------------------------------------------------------------------------------------


def test_smoothed_line_is_the_given_curve(table, smooth_curve):
    image = reliability_diagram(table, smooth_curve=smooth_curve)
    assert colour_at(image, CALIBRATION_PANEL, 0.5, 0.42) == INK
    assert colour_at(image, CALIBRATION_PANEL, 0.9, 0.8) == INK


def test_smoothed_band_shades_lower_to_upper_where_known_and_keeps_the_bars_hue(table, smooth_curve):
    image = reliability_diagram(table, smooth_curve=smooth_curve)
    shaded = colour_at(image, CALIBRATION_PANEL, 0.5, 0.37)  # inside the band [0.36, 0.48], an empty bin
    assert shaded != BACKGROUND and max(shaded) - min(shaded) <= 2 and shaded[0] > 150
    assert colour_at(image, CALIBRATION_PANEL, 0.5, 0.3) == BACKGROUND
    assert colour_at(image, CALIBRATION_PANEL, 0.1, 0.2) == BACKGROUND  # NaN there: no band
    red, green, blue = colour_at(image, CALIBRATION_PANEL, 0.7, 0.565)  # the band over a blue bar
    assert blue > red and blue > green


def test_curve_without_its_band_is_rejected(table, smooth_curve):
    del smooth_curve["upper"]
    with pytest.raises(ValueError, match=r"`smooth_curve` must have .* lacks \['upper'\]"):
        reliability_diagram(table, smooth_curve=smooth_curve)


# ---- binning ----------------------------------------------------------------------------------------------


@pytest.fixture
def equal_mass_table() -> dict[str, list[float]]:
    """Three bins of 4 samples each, 0.5, 0.2 and 0.3 wide."""
    return {
        "lower": [0.0, 0.5, 0.7],
        "upper": [0.5, 0.7, 1.0],
        "count": [4.0, 4.0, 4.0],
        "confidence": [0.4, 0.6, 0.85],
        "accuracy": [0.25, 0.5, 0.75],
    }


def test_equal_mass_bars_span_their_bins(equal_mass_table):
    image = reliability_diagram(equal_mass_table, binning="equal_mass")
    for x in (0.02, 0.48, 0.52, 0.68, 0.72, 0.98):
        assert colour_at(image, CALIBRATION_PANEL, x, 0.1) == OVER_CONFIDENT


def test_equal_mass_counts_show_density_so_narrow_bins_of_equal_count_are_taller(equal_mass_table):
    image = reliability_diagram(equal_mass_table, binning="equal_mass")
    tops = [bar_top(image, COUNT_PANEL, x, (COUNT_BARS,)) for x in (0.25, 0.6, 0.85)]  # densities 2/3, 5/3, 10/9
    assert tops[1] < tops[2] < tops[0]
    log_ratio = (tops[0] - tops[1]) / (tops[0] - tops[2])
    assert math.isclose(log_ratio, math.log(2.5) / math.log(10 / 6), rel_tol=0.1)


def test_unknown_binning_is_rejected(table):
    with pytest.raises(ValueError, match=r"`binning` must be one of \('equal_mass', 'equal_width'\), got 'quantile'"):
        reliability_diagram(table, binning="quantile")


# ---- from the metrics -------------------------------------------------------------------------------------


def test_diagram_draws_the_tables_and_curve_the_metrics_return():
    generator = torch.Generator().manual_seed(0)
    logits = 2 * torch.randn(400, 4, generator=generator)
    labels = torch.multinomial((logits / 1.5).softmax(dim=1), 1, generator=generator).squeeze(1)
    bootstrap, estimators = BootstrapIntervals(num_replicates=20), CalibrationEstimators(n_bins=5)
    bootstrap.update(logits, labels)
    estimators.update(logits, labels)
    curve = estimators.smooth_curve(points=51)
    image = reliability_diagram(bootstrap.reliability_table(), ece=0.1, smooth_curve=curve)
    equal_mass = reliability_diagram(estimators.equal_mass_table(), smooth_curve=curve, binning="equal_mass")
    assert image.size == equal_mass.size == (SIZE, SIZE)
    table = bootstrap.reliability_table()
    top_bin = int(torch.argmax(table["count"]))
    x = float(table["lower"][top_bin] + table["upper"][top_bin]) / 2
    assert colour_at(image, CALIBRATION_PANEL, x, 0.02) in (OVER_CONFIDENT, UNDER_CONFIDENT)
