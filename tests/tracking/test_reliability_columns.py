import math

import numpy as np
import pytest
import torch

from xent_plugin.functional.calibration_error import reliability_table
from xent_plugin.functional.softmax_stats import reliability_bins
from xent_plugin.tracking.reliability_columns import RELIABILITY_COLUMNS, reliability_columns


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
