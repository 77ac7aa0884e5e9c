"""A small run of scripts/simulate_calibration.py: the properties docs/calibration.md relies on, at N = 1000."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "simulate_calibration.py"


@pytest.fixture(scope="module")
def cells():
    # scripts/ is not a package; load the script by path.
    spec = importlib.util.spec_from_file_location("simulate_calibration", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up there
    spec.loader.exec_module(module)
    report = module.simulate(
        sizes=(1000,),
        replications={1000: 300},
        smooth_replications=0,
        bootstrap_sizes=(),
        bootstrap_replications=0,
        replicate_counts=(1000,),
        ece_replicates={},
        seed=7,
    )
    return {cell["setting"]: cell for cell in report}


@pytest.mark.slow
def test_calibration_test_rejects_calibrated_models_at_the_nominal_rate(cells):
    calibrated = [cell["rejection_rate"] for cell in cells.values() if cell["truth"]["l2"] == 0]
    assert len(calibrated) == 3
    # 900 replications in all: the binomial standard error at 5 % is 0.7 %.
    assert 0.03 <= np.mean(calibrated) <= 0.07


@pytest.mark.slow
def test_calibration_test_detects_large_miscalibration(cells):
    for name in ("peaked, overconfident", "spread, underconfident", "Dirichlet, overconfident"):
        assert cells[name]["rejection_rate"] >= 0.95, name


@pytest.mark.slow
def test_l2_interval_covers_in_calibrated_and_miscalibrated_settings(cells):
    coverage = [cell["l2_interval_coverage"] for cell in cells.values()]
    assert np.mean(coverage) >= 0.93
    assert min(coverage) >= 0.90  # 300 replications per setting: a standard error of 1.3 %


@pytest.mark.slow
def test_plug_in_ece_is_biased_upward_at_calibration_where_the_debiased_estimate_is_less_so(cells):
    for cell in cells.values():
        if cell["truth"]["l2"] == 0:
            assert cell["ece_15_equal_width"]["bias"] > 0.015
            assert cell["debiased_l2_equal_width"]["bias"] < cell["ece_15_equal_width"]["bias"]
