"""An update reads nothing back from the device: zero host syncs with ``validate_args=False``, one with checks.

A sync (``.item()``, ``bool(tensor)``, ``nonzero``, boolean-mask indexing, ...) stalls a GPU stream until all
queued work has run. They are counted on CPU with a ``TorchDispatchMode`` that sees every ATen call an update
makes, including those of the compiled pass at run time (``ignore_compile_internals``).
"""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from tests.metrics._calibration_estimator_cases import multiclass_batch as estimator_batch
from tests.metrics._metric_cases import CASES
from xent_plugin.functional import fused
from xent_plugin.metrics import (
    AdaptiveCalibrationError,
    BootstrapIntervals,
    CalibrationEstimators,
    CalibrationTest,
    ClasswiseCalibrationError,
    DebiasedCalibrationError,
    SmoothCalibrationError,
    TemperatureScan,
    XentMetrics,
)

ESTIMATORS = {
    "adaptive": lambda **kw: AdaptiveCalibrationError(ignore_index=-100, **kw),
    "debiased": lambda **kw: DebiasedCalibrationError(ignore_index=-100, **kw),
    "smooth": lambda **kw: SmoothCalibrationError(ignore_index=-100, **kw),
    "estimators": lambda **kw: CalibrationEstimators(ignore_index=-100, **kw),
    "classwise": lambda **kw: ClasswiseCalibrationError(num_classes=5, ignore_index=-100, **kw),
    "temperature_scan": lambda **kw: TemperatureScan(ignore_index=-100, **kw),
    "bootstrap": lambda **kw: BootstrapIntervals(num_replicates=20, ignore_index=-100, **kw),
}

# ATen calls whose result size or value the host must know: each one waits for the device.
SYNCING_OPS = {"_local_scalar_dense", "nonzero", "masked_select", "is_nonzero", "unique", "_unique2", "item"}


class HostSyncCounter(TorchDispatchMode):
    """Records the syncing ATen calls (and boolean-mask indexing, which calls nonzero) made inside it."""

    @classmethod
    def ignore_compile_internals(cls) -> bool:
        return True  # see the compiled artifact's calls at run time, not the tracer's

    def __init__(self) -> None:
        super().__init__()
        self.syncs: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name in SYNCING_OPS or (name.startswith("index") and _has_boolean_index(args)):
            self.syncs.append(name)
        return func(*args, **(kwargs or {}))


def _has_boolean_index(args) -> bool:
    indices = args[1] if len(args) > 1 and isinstance(args[1], (list, tuple)) else []
    return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in indices)


def _syncs_of_one_update(metric, preds, target) -> list[str]:
    metric.update(preds, target)  # the first update may compile or set up; the second is the steady state
    with HostSyncCounter() as counter:
        metric.update(preds, target)
    return counter.syncs


def test_the_counter_sees_item_and_masked_indexing():
    values = torch.arange(4.0)
    with HostSyncCounter() as counter:
        values.max().item()
        values[values > 1].sum()
    assert counter.syncs == ["_local_scalar_dense", "index"]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_update_without_validation_makes_no_host_sync(case):
    preds, target = case.make_batch(64, 0)
    assert _syncs_of_one_update(case.make_metric(validate_args=False), preds, target) == []


@pytest.mark.parametrize("case", CASES, ids=str)
def test_validated_update_makes_at_most_one_host_sync(case):
    preds, target = case.make_batch(64, 0)
    assert len(_syncs_of_one_update(case.make_metric(validate_args=True), preds, target)) <= 1


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_calibration_estimator_update_without_validation_makes_no_host_sync(name):
    preds, target = estimator_batch(64, 0)
    assert _syncs_of_one_update(ESTIMATORS[name](validate_args=False), preds, target) == []


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_validated_calibration_estimator_update_makes_at_most_one_host_sync(name):
    preds, target = estimator_batch(64, 0)
    assert len(_syncs_of_one_update(ESTIMATORS[name](validate_args=True), preds, target)) <= 1


@pytest.mark.parametrize("validate_args", [False, True])
def test_fused_pass_makes_no_host_sync_beyond_the_checks(monkeypatch, validate_args):
    monkeypatch.setattr(fused, "MODE", "on")
    monkeypatch.setattr(fused, "_failed", False)
    logits, tokens = torch.randn(2, 16, 8), torch.randint(0, 8, (2, 16))
    tokens[:, -3:] = -100
    metric = XentMetrics(class_dim=-1, ignore_index=-100, validate_args=validate_args)
    syncs = _syncs_of_one_update(metric, logits, tokens)
    assert not fused._failed  # the compiled pass ran, it did not fall back to the eager one
    assert syncs == (["_local_scalar_dense"] if validate_args else [])


@pytest.mark.parametrize("validate_args", [False, True])
def test_xent_metrics_feeding_every_extra_makes_no_host_sync_beyond_the_checks(validate_args):
    preds, target = estimator_batch(64, 0)
    extras = [ESTIMATORS[name](validate_args=False) for name in ("estimators", "temperature_scan", "bootstrap")]
    extras.append(CalibrationTest(ignore_index=-100, validate_args=False))
    metric = XentMetrics(ignore_index=-100, validate_args=validate_args)
    metric.update(preds, target, extras=extras)
    with HostSyncCounter() as counter:
        metric.update(preds, target, extras=extras)
    assert len(counter.syncs) == (1 if validate_args else 0), counter.syncs
