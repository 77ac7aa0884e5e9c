import math

import numpy as np
import pytest
import torch

from xent_plugin.functional.calibration_error import reliability_table
from xent_plugin.functional.softmax_stats import reliability_bins
from xent_plugin.integrations.figures.reliability_columns import (
    INTERVAL_COLUMNS,
    RELIABILITY_COLUMNS,
    reliability_columns,
    smooth_curve_columns,
)
from xent_plugin.metrics.calibration_estimators import CalibrationEstimators


def test_table_of_the_functional_api_reads_as_the_hand_worked_table(table):
    confidence = torch.tensor([0.3, 0.35, 0.7, 0.75, 0.95, 0.9])
    correct = torch.tensor([1.0, 0.0, 1.0, 1.0, 1.0, 0.0])
    columns = reliability_columns(reliability_table(reliability_bins(confidence, correct, n_bins=5)))
    for name in RELIABILITY_COLUMNS:
        np.testing.assert_allclose(columns[name], table[name], atol=1e-6, err_msg=name)


def test_columns_are_copies_the_caller_may_overwrite(table):
    table["count"] = torch.tensor(table["count"])
    columns = reliability_columns(table)
    table["count"].fill_(math.nan)
    assert columns["count"].tolist() == [0.0, 2.0, 0.0, 2.0, 2.0]


def test_missing_column_is_named(table):
    del table["accuracy"]
    with pytest.raises(ValueError, match=r"lacks \['accuracy'\]"):
        reliability_columns(table)


def test_columns_of_different_lengths_are_rejected(table):
    table["count"] = table["count"][:-1]
    with pytest.raises(ValueError, match=r"'count': 4"):
        reliability_columns(table)


def test_two_dimensional_column_is_rejected(table):
    table["count"] = torch.zeros(2, 5)
    with pytest.raises(ValueError, match=r"table\['count'\].*1-D.*\(2, 5\)"):
        reliability_columns(table)


# ---- per-bin intervals ------------------------------------------------------------------------------------


def test_interval_columns_are_read_after_the_five_with_nan_kept(interval_table):
    columns = reliability_columns(interval_table)
    assert list(columns) == [*RELIABILITY_COLUMNS, *INTERVAL_COLUMNS]
    for name in INTERVAL_COLUMNS:
        np.testing.assert_array_equal(columns[name], interval_table[name], err_msg=name)


def test_table_without_intervals_reads_as_the_five_columns(table):
    table["bin_index"] = [0, 1, 2, 3, 4]  # keys the diagram does not know are ignored
    assert list(reliability_columns(table)) == list(RELIABILITY_COLUMNS)


def test_interval_of_another_length_is_rejected(interval_table):
    interval_table["accuracy_upper"] = interval_table["accuracy_upper"][:3]
    with pytest.raises(ValueError, match=r"one entry per bin.*'accuracy_upper': 3"):
        reliability_columns(interval_table)


def test_half_an_interval_is_rejected_naming_the_missing_end(interval_table):
    del interval_table["confidence_upper"]
    with pytest.raises(ValueError, match=r"has 'confidence_lower' but not 'confidence_upper'"):
        reliability_columns(interval_table)


# ---- smoothed curve ---------------------------------------------------------------------------------------


def test_smooth_curve_is_copied_to_arrays_and_floats(smooth_curve):
    smooth_curve["accuracy"] = torch.tensor(smooth_curve["accuracy"], dtype=torch.float64)
    smooth_curve["smooth_ece"] = torch.tensor(0.0456, dtype=torch.float64)
    columns = smooth_curve_columns(smooth_curve)
    smooth_curve["accuracy"].fill_(0.0)
    assert list(columns) == ["confidence", "accuracy", "lower", "upper", "density", "smooth_ece", "bandwidth"]
    assert columns["accuracy"][2] == 0.15  # not the 0 written afterwards
    assert columns["smooth_ece"] == 0.0456 and type(columns["smooth_ece"]) is float
    assert columns["bandwidth"] == 0.07


def test_curve_of_the_calibration_estimators_reads_as_columns():
    metric = CalibrationEstimators(input_format="probs")
    metric.update(torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.7, 0.3]]), torch.tensor([0, 1, 1, 0]))
    curve = metric.smooth_curve(points=11)
    columns = smooth_curve_columns(curve)
    for name in ("confidence", "accuracy", "lower", "upper", "density"):
        np.testing.assert_array_equal(columns[name], curve[name].numpy(), err_msg=name)
    assert columns["smooth_ece"] == curve["smooth_ece"].item()


def test_curve_copy_reads_its_own_output(smooth_curve):
    columns = smooth_curve_columns(smooth_curve)
    again = smooth_curve_columns(columns)
    assert list(again) == list(columns)
    for name, value in columns.items():
        np.testing.assert_array_equal(again[name], value, err_msg=name)


def test_curve_missing_its_band_is_rejected(smooth_curve):
    del smooth_curve["lower"]
    with pytest.raises(ValueError, match=r"`smooth_curve` must have the columns .* lacks \['lower'\]"):
        smooth_curve_columns(smooth_curve)


def test_curve_columns_of_different_lengths_are_rejected(smooth_curve):
    smooth_curve["upper"] = smooth_curve["upper"][:-1]
    with pytest.raises(ValueError, match=r"one entry per grid point.*'upper': 10"):
        smooth_curve_columns(smooth_curve)


def test_smooth_ece_that_is_not_one_number_is_rejected(smooth_curve):
    smooth_curve["smooth_ece"] = [0.1, 0.2]
    with pytest.raises(ValueError, match=r"smooth_curve\['smooth_ece'\]` must be a single number, got shape \(2,\)"):
        smooth_curve_columns(smooth_curve)
