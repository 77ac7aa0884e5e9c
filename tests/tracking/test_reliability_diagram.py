import math

from matplotlib.container import BarContainer
from matplotlib.figure import Figure

from xent_plugin.tracking.reliability_diagram import figure_to_image, reliability_diagram


def bars(axes, label: str) -> BarContainer:
    (container,) = [container for container in axes.containers if container.get_label() == label]
    return container


def filled(values: list[float], table) -> list[float]:
    return [value for value, count in zip(values, table["count"], strict=True) if count > 0]


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


def test_ece_is_printed_when_given(table):
    texts = [text.get_text() for text in reliability_diagram(table, ece=0.0123).axes[0].texts]
    assert texts == ["ECE = 0.0123"]


def test_nothing_is_printed_without_ece(table):
    assert len(reliability_diagram(table).axes[0].texts) == 0


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
