"""The opt-in calibration estimators XentMonitor can keep beside its XentMetrics: which, and what they log."""

from __future__ import annotations

from torch import Tensor
from torchmetrics import Metric

from xent_plugin.metrics.bootstrap import BootstrapIntervals
from xent_plugin.metrics.calibration_estimators import CalibrationEstimators
from xent_plugin.metrics.temperature_scan import TemperatureScan

# compute() keys that XentMetrics already logs (the bootstrap's point estimates, the scan's NLL at T = 1).
_ALREADY_LOGGED = {"cross_entropy", "accuracy", "ece", "nll"}


def build_extra_metrics(
    *,
    task: str,
    n_bins: int,
    class_dim: int,
    ignore_index: int | None,
    input_format: str,
    calibration_mode: str,
    calibration_estimators: bool,
    bootstrap_replicates: int | None,
    temperature_scan: bool,
) -> dict[str, Metric]:
    """The extra metrics one stage needs; each syncs only inside ``synced_together`` (``sync_on_compute=False``).

    The batch was already validated by XentMetrics, so the extras skip their own checks.

    Example:
        >>> sorted(build_extra_metrics(task="multiclass", n_bins=15, class_dim=1, ignore_index=None,
        ...     input_format="logits", calibration_mode="top_label", calibration_estimators=True,
        ...     bootstrap_replicates=None, temperature_scan=True))
        ['calibration_estimators', 'temperature_scan']
    """
    if (bootstrap_replicates or temperature_scan) and task != "multiclass":
        raise ValueError(f"`bootstrap_replicates` and `temperature_scan` need task='multiclass', got task={task!r}.")
    if calibration_estimators and task == "multilabel":
        raise ValueError("`calibration_estimators` supports task='multiclass' or 'binary', not 'multilabel'.")
    shared = dict(
        input_format=input_format,
        ignore_index=ignore_index,
        validate_args=False,
        sync_on_compute=False,
        compute_with_cache=False,
    )
    extras: dict[str, Metric] = {}
    if calibration_estimators:
        extras["calibration_estimators"] = CalibrationEstimators(
            task=task, n_bins=n_bins, class_dim=class_dim, calibration_mode=calibration_mode, **shared
        )
    if bootstrap_replicates:
        extras["bootstrap"] = BootstrapIntervals(
            num_replicates=bootstrap_replicates, n_bins=n_bins, class_dim=class_dim, **shared
        )
    if temperature_scan:
        extras["temperature_scan"] = TemperatureScan(class_dim=class_dim, **shared)
    return extras


def extra_values(extras: dict[str, Metric]) -> dict[str, Tensor]:
    """The scalars the extras add to an epoch's log, e.g. ``smooth_ece``, ``ece_lower``, ``temperature``."""
    values: dict[str, Tensor] = {}
    for metric in extras.values():
        values.update({key: value for key, value in metric.compute().items() if key not in _ALREADY_LOGGED})
    return values
