import math

import numpy as np
import pytest
import torch
from matplotlib.collections import PolyCollection
from matplotlib.container import BarContainer, ErrorbarContainer
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from xent_plugin.integrations.figures.reliability_diagram import figure_to_image, reliability_diagram
from xent_plugin.metrics.bootstrap import BootstrapIntervals
from xent_plugin.metrics.calibration_estimators import CalibrationEstimators


def bars(axes, label: str) -> BarContainer:
    (container,) = [container for container in axes.containers if container.get_label() == label]
    return container


def filled(values: list[float], table) -> list[float]:
    return [value for value, count in zip(values, table["count"], strict=True) if count > 0]


def labelled(artists, label: str):
    (artist,) = [artist for artist in artists if artist.get_label() == label]
    return artist


def printed(fig: Figure) -> str:
    return fig.axes[0].get_legend().get_title().get_text()


def legend_centre_in_axes(fig: Figure) -> tuple[float, float]:
    axes = fig.axes[0]
    extent = axes.get_legend().get_window_extent(fig.canvas.get_renderer())
    return tuple(axes.transAxes.inverted().transform(((extent.x0 + extent.x1) / 2, (extent.y0 + extent.y1) / 2)))


def test_has_a_calibration_panel_over_a_histogram_panel_sharing_x(table):
    calibration_axes, histogram_axes = reliability_diagram(table).axes
    assert calibration_axes.get_shared_x_axes().joined(calibration_axes, histogram_axes)
    assert calibration_axes.get_xlim() == histogram_axes.get_xlim() == (0.0, 1.0)
    assert histogram_axes.get_xlabel() == "confidence"


def test_accuracy_bars_span_each_filled_bin_up_to_its_accuracy(table):
    accuracy = bars(reliability_diagram(table).axes[0], "accuracy")
    assert [bar.get_x() for bar in accuracy] == filled(table["lower"], table)
    assert [bar.get_x() + bar.get_width() for bar in accuracy] == filled(table["upper"], table)
    assert [bar.get_height() for bar in accuracy] == filled(table["accuracy"], table)


def test_gap_bars_run_from_accuracy_to_mean_confidence(table):
    gap = bars(reliability_diagram(table).axes[0], "gap")
    assert [bar.get_y() for bar in gap] == filled(table["accuracy"], table)
    tops = [bar.get_y() + bar.get_height() for bar in gap]
    assert all(map(math.isclose, tops, filled(table["confidence"], table)))


def test_histogram_bars_are_the_bin_counts(table):
    count = bars(reliability_diagram(table).axes[1], "count")
    assert [bar.get_height() for bar in count] == filled(table["count"], table)
    assert [bar.get_x() for bar in count] == filled(table["lower"], table)


def test_empty_bins_are_not_drawn(table):
    calibration_axes, histogram_axes = reliability_diagram(table).axes
    assert len(calibration_axes.patches) == 2 * 3
    assert len(histogram_axes.patches) == 3


def test_diagonal_of_perfect_calibration_is_drawn(table):
    (diagonal,) = reliability_diagram(table).axes[0].get_lines()
    assert list(diagonal.get_xdata()) == list(diagonal.get_ydata()) == [0, 1]


def test_ece_is_printed_as_the_legend_title_when_given(table):
    assert printed(reliability_diagram(table, ece=0.0123)) == "ECE = 0.0123"


def test_nothing_is_printed_without_ece(table):
    fig = reliability_diagram(table)
    assert printed(fig) == ""
    assert len(fig.axes[0].texts) == 0


def test_title_is_shown(table):
    assert reliability_diagram(table, title="val, epoch 3").axes[0].get_title() == "val, epoch 3"


def test_image_is_rgb_uint8_at_the_figure_size_in_pixels(table):
    image = figure_to_image(reliability_diagram(table))
    assert image.shape == (600, 500, 3)
    assert image.dtype.name == "uint8"
    assert image.min() < 128 < image.max()


def test_image_of_a_figure_without_a_canvas_is_rendered():
    image = figure_to_image(Figure(figsize=(1, 1), dpi=20, facecolor="red"))
    assert image.shape == (20, 20, 3)
    assert image[10, 10].tolist() == [255, 0, 0]


# ---- per-bin intervals ------------------------------------------------------------------------------------


def test_whiskers_span_each_filled_bins_accuracy_interval_at_its_mean_confidence(interval_table):
    whiskers = labelled(reliability_diagram(interval_table).axes[0].containers, "accuracy interval")
    assert isinstance(whiskers, ErrorbarContainer)
    _, _, (vertical,) = whiskers.lines
    expected = [
        [[confidence, lower], [confidence, upper]]
        for confidence, lower, upper in zip(
            filled(interval_table["confidence"], interval_table),
            filled(interval_table["accuracy_lower"], interval_table),
            filled(interval_table["accuracy_upper"], interval_table),
            strict=True,
        )
    ]
    # The last interval, [0.55, 0.8], excludes that bin's accuracy of 0.5 and is still drawn as given.
    np.testing.assert_allclose(np.array(vertical.get_segments()), expected)


def test_bins_whose_interval_is_unknown_get_no_whisker(interval_table):
    interval_table["accuracy_lower"][3] = interval_table["accuracy_upper"][3] = float("nan")
    whiskers = labelled(reliability_diagram(interval_table).axes[0].containers, "accuracy interval")
    _, _, (vertical,) = whiskers.lines
    assert [segment[0][0] for segment in vertical.get_segments()] == [0.325, 0.925]


def test_no_whiskers_without_interval_columns(table):
    labels = [container.get_label() for container in reliability_diagram(table).axes[0].containers]
    assert labels == ["accuracy", "gap"]


# ---- smoothed curve ---------------------------------------------------------------------------------------


def test_smoothed_line_is_the_given_curve(table, smooth_curve):
    line = labelled(reliability_diagram(table, smooth_curve=smooth_curve).axes[0].get_lines(), "smoothed accuracy")
    assert isinstance(line, Line2D)
    np.testing.assert_array_equal(line.get_xdata(), smooth_curve["confidence"])
    np.testing.assert_array_equal(line.get_ydata(), smooth_curve["accuracy"])  # NaN where unknown


def test_smoothed_band_spans_lower_to_upper_where_known(table, smooth_curve):
    band = labelled(reliability_diagram(table, smooth_curve=smooth_curve).axes[0].collections, "smoothed band")
    assert isinstance(band, PolyCollection)
    vertices = np.concatenate([path.vertices for path in band.get_paths()])
    for confidence, lower, upper in zip(
        smooth_curve["confidence"], smooth_curve["lower"], smooth_curve["upper"], strict=True
    ):
        heights = set(vertices[np.isclose(vertices[:, 0], confidence), 1].tolist())
        assert heights == (set() if math.isnan(lower) else {lower, upper}), confidence


def test_smooth_ece_and_bandwidth_are_printed_under_the_ece(table, smooth_curve):
    fig = reliability_diagram(table, ece=0.0123, smooth_curve=smooth_curve)
    assert printed(fig) == "ECE = 0.0123\nsmECE = 0.0456 (σ = 0.070)"


def test_smooth_ece_is_printed_without_bandwidth_or_ece(table, smooth_curve):
    del smooth_curve["bandwidth"]
    assert printed(reliability_diagram(table, smooth_curve=smooth_curve)) == "smECE = 0.0456"


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


def test_equal_mass_histogram_shows_density_so_bar_areas_are_the_sample_fractions(equal_mass_table):
    histogram_axes = reliability_diagram(equal_mass_table, binning="equal_mass").axes[1]
    density = bars(histogram_axes, "density")
    np.testing.assert_allclose([bar.get_height() for bar in density], [1 / 1.5, 1 / 0.6, 1 / 0.9])
    np.testing.assert_allclose([bar.get_height() * bar.get_width() for bar in density], [1 / 3] * 3)
    assert histogram_axes.get_ylabel() == "density"


def test_equal_mass_bars_span_their_bins(equal_mass_table):
    accuracy = bars(reliability_diagram(equal_mass_table, binning="equal_mass").axes[0], "accuracy")
    np.testing.assert_allclose([bar.get_width() for bar in accuracy], [0.5, 0.2, 0.3])


def test_equal_mass_ece_names_the_binning(equal_mass_table):
    fig = reliability_diagram(equal_mass_table, ece=0.1, binning="equal_mass")
    assert printed(fig) == "ECE (equal-mass bins) = 0.1000"


def test_unknown_binning_is_rejected(table):
    with pytest.raises(ValueError, match=r"`binning` must be one of \('equal_mass', 'equal_width'\), got 'quantile'"):
        reliability_diagram(table, binning="quantile")


# ---- legend -----------------------------------------------------------------------------------------------


def test_legend_lists_bins_then_curve_then_reference(interval_table, smooth_curve):
    legend = reliability_diagram(interval_table, ece=0.1, smooth_curve=smooth_curve).axes[0].get_legend()
    assert [text.get_text() for text in legend.get_texts()] == [
        "accuracy",
        "gap",
        "accuracy interval",
        "smoothed accuracy",
        "smoothed band",
        "perfect calibration",
    ]


def two_bins(confidence: list[float], accuracy: list[float]) -> dict[str, list[float]]:
    return {
        "lower": [0.0, 0.5],
        "upper": [0.5, 1.0],
        "count": [10.0, 30.0],
        "confidence": confidence,
        "accuracy": accuracy,
    }


def test_legend_sits_above_the_diagonal_for_an_over_confident_model():
    x, y = legend_centre_in_axes(reliability_diagram(two_bins([0.4, 0.9], [0.3, 0.7]), ece=0.1))
    assert x < 0.5 < y


def test_legend_sits_over_the_bar_bodies_for_an_under_confident_model():
    x, y = legend_centre_in_axes(reliability_diagram(two_bins([0.4, 0.7], [0.6, 0.95]), ece=0.1))
    assert y < 0.5 < x


# ---- from the metrics -------------------------------------------------------------------------------------


def test_diagram_draws_the_tables_and_curve_the_metrics_return():
    generator = torch.Generator().manual_seed(0)
    logits = 2 * torch.randn(400, 4, generator=generator)
    labels = torch.multinomial((logits / 1.5).softmax(dim=1), 1, generator=generator).squeeze(1)
    bootstrap, estimators = BootstrapIntervals(num_replicates=20), CalibrationEstimators(n_bins=5)
    bootstrap.update(logits, labels)
    estimators.update(logits, labels)
    curve = estimators.smooth_curve(points=51)
    fig = reliability_diagram(bootstrap.reliability_table(), ece=0.1, smooth_curve=curve)
    line = labelled(fig.axes[0].get_lines(), "smoothed accuracy")
    np.testing.assert_array_equal(line.get_ydata(), curve["accuracy"].numpy())
    assert printed(fig).endswith(f"smECE = {curve['smooth_ece'].item():.4f} (σ = {curve['bandwidth'].item():.3f})")
    equal_mass = reliability_diagram(estimators.equal_mass_table(), smooth_curve=curve, binning="equal_mass")
    assert len(bars(equal_mass.axes[1], "density")) == 5
    assert figure_to_image(fig).shape == figure_to_image(equal_mass).shape == (600, 500, 3)
