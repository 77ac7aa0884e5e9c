"""What XentMonitor measures, written once: the options of its XentMetrics and of the opt-in calibration extras."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from torch import Tensor
from torchmetrics import Metric

from xent_plugin.metrics.bootstrap import BootstrapIntervals
from xent_plugin.metrics.calibration_estimators import CalibrationEstimators
from xent_plugin.metrics.calibration_test import CalibrationTest
from xent_plugin.metrics.temperature_scan import TemperatureScan
from xent_plugin.metrics.xent_metrics import XentMetrics

# compute() keys that XentMetrics already logs (the bootstrap's point estimates, the scan's NLL at T = 1).
_ALREADY_LOGGED = {"cross_entropy", "accuracy", "ece", "nll"}
# The calibration test's keys (p_value, l2, ...) need their subject in a log of many metrics.
_KEY_PREFIXES = {"calibration_test": "calibration_"}
# Marks the fields that switch on an extra metric rather than configure XentMetrics.
_EXTRA = {"extra": True}


@dataclass(frozen=True)
class MetricOptions:
    """The options of one XentMonitor's metrics: those of :class:`~xent_plugin.metrics.XentMetrics`, then the
    opt-in extras (see :class:`~xent_plugin.integrations.lightning.XentMonitor` for each). XentMonitor builds each
    stage's metrics from it and names it in its ``state_key``.

    Example:
        >>> options = MetricOptions(n_bins=10, temperature_scan=True)
        >>> options.xent_metrics().n_bins, sorted(options.extras())
        (10, ['temperature_scan'])
    """

    task: str = "multiclass"
    n_bins: int = 15
    class_dim: int = 1
    ignore_index: int | None = None
    num_labels: int | None = None
    calibration_mode: str = "top_label"
    input_format: str = "logits"
    validate_args: bool = True
    calibration_estimators: bool = field(default=False, metadata=_EXTRA)
    bootstrap_replicates: int | None = field(default=None, metadata=_EXTRA)
    temperature_scan: bool = field(default=False, metadata=_EXTRA)
    calibration_test: bool = field(default=False, metadata=_EXTRA)

    def __post_init__(self) -> None:
        if (self.bootstrap_replicates or self.temperature_scan or self.calibration_test) and self.task != "multiclass":
            raise ValueError(
                "`bootstrap_replicates`, `temperature_scan` and `calibration_test` need task='multiclass', "
                f"got task={self.task!r}."
            )
        if self.calibration_estimators and self.task == "multilabel":
            raise ValueError("`calibration_estimators` supports task='multiclass' or 'binary', not 'multilabel'.")

    def xent_metrics(self) -> XentMetrics:
        """A XentMetrics that syncs only inside ``synced_together`` (``sync_on_compute=False``)."""
        own = {item.name: getattr(self, item.name) for item in fields(self) if not item.metadata.get("extra")}
        return XentMetrics(**own, sync_on_compute=False)

    def extras(self) -> dict[str, Metric]:
        """The extra metrics switched on, each syncing only inside ``synced_together``.

        The batch was already validated by XentMetrics, so the extras skip their own checks.
        """
        shared = dict(
            input_format=self.input_format,
            ignore_index=self.ignore_index,
            class_dim=self.class_dim,
            validate_args=False,
            sync_on_compute=False,
            compute_with_cache=False,
        )
        extras: dict[str, Metric] = {}
        if self.calibration_estimators:
            extras["calibration_estimators"] = CalibrationEstimators(
                task=self.task, n_bins=self.n_bins, calibration_mode=self.calibration_mode, **shared
            )
        if self.bootstrap_replicates:
            extras["bootstrap"] = BootstrapIntervals(
                num_replicates=self.bootstrap_replicates, n_bins=self.n_bins, **shared
            )
        if self.temperature_scan:
            extras["temperature_scan"] = TemperatureScan(**shared)
        if self.calibration_test:
            extras["calibration_test"] = CalibrationTest(n_bins=self.n_bins, **shared)
        return extras


def extra_values(extras: dict[str, Metric]) -> dict[str, Tensor]:
    """The scalars the extras add to an epoch's log, e.g. ``smooth_ece``, ``ece_lower``, ``temperature``,
    ``calibration_p_value``."""
    values: dict[str, Tensor] = {}
    for name, metric in extras.items():
        prefix = _KEY_PREFIXES.get(name, "")
        values.update({prefix + key: value for key, value in metric.compute().items() if key not in _ALREADY_LOGGED})
    return values
