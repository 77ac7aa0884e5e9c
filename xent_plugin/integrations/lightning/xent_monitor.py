"""XentMonitor: one callback that logs device-synced cross-entropy, KL and calibration to Lightning's loggers."""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from torch import Tensor
from torchmetrics import Metric

from xent_plugin.integrations.lightning.exact_once import SampleBudget
from xent_plugin.integrations.lightning.metric_options import MetricOptions, extra_values
from xent_plugin.integrations.lightning.prediction_source import Extract, Predictions, PredictionSource
from xent_plugin.integrations.mlflow.artifacts import queue_reliability_figures
from xent_plugin.integrations.mlflow.loggers import outbox_for, owns_outbox
from xent_plugin.metrics.base import synced_together
from xent_plugin.metrics.xent_metrics import XentMetrics

STAGE_PREFIXES = {"train": "train", "validate": "val", "test": "test"}
NAN_POLICIES = ("raise", "warn")


class XentMonitor(Callback):
    r"""Logs cross-entropy, entropy, KL, Brier score, accuracy and calibration, synced across devices.

    Attach it to a Trainer; the LightningModule only has to return its predictions from
    ``validation_step`` / ``test_step`` (and ``training_step`` when ``log_train=True``) as a dict with
    ``"logits"`` (or ``"probs"``), ``"target"`` and, where the true distribution is known, ``"reference"``::

        trainer = Trainer(logger=MLFlowLogger(tracking_uri="sqlite:///mlflow.db"), callbacks=[XentMonitor()])

    Per validation and test epoch it logs, under ``val/`` and ``test/``: ``cross_entropy``, ``entropy``,
    ``brier_score``, ``accuracy``, ``ece``, ``mce``, ``rmsce``, ``perplexity`` (multiclass), and with a reference
    the decomposition ``reference_cross_entropy`` = ``reference_entropy`` + ``kl``. Scalars go through
    ``pl_module.log``, so every Lightning logger gets them and ``ModelCheckpoint`` / ``EarlyStopping`` can
    monitor them. Every attached ``MLFlowLogger`` also gets, from rank 0, a reliability diagram (``log_image``,
    so the UI shows a step slider) and the reliability table.

    The scalars, the diagram and the table of one epoch share one step: during ``fit``, the step Lightning
    gives that epoch's scalars (the training step count), so a diagram sits at the point of the curve it
    explains. A validation outside ``fit`` (``trainer.validate()`` before, between or after fits, or twice) and a
    second test would get the step of the one before; each gets the next free step instead, scalars included,
    so none overwrites or hides another.

    Under DDP each rank accumulates locally — no collective per step — and ``compute`` is a single float64
    sum all-reduce at epoch end. Samples that ``DistributedSampler`` repeats to pad the last batch are
    dropped (see :mod:`xent_plugin.integrations.lightning.exact_once`), so the logged values equal a single-device run.

    Args:
        task: ``"multiclass"``, ``"binary"`` or ``"multilabel"``.
        n_bins: reliability histogram bins.
        class_dim: class dimension of multiclass predictions: 1, or -1 for the token layout (B, T, V).
        ignore_index: target value not to count (padding tokens).
        num_labels: number of labels, for multilabel.
        calibration_mode: ``"top_label"`` or ``"positive"`` for binary tasks.
        preds_keys, target_key, reference_key: where to read the step's returned dict; ``preds_keys`` maps an
            input format to its key (default ``{"logits": "logits", "probs": "probs", "log_probs": "log_probs"}``).
        extract: ``extract(outputs, batch) -> (preds, target[, reference])`` for any other output; its preds are
            read as ``input_format``.
        input_format: the format of ``extract``'s preds.
        log_train: also accumulate training batches and log the synced epoch value under ``train/``.
        train_every_n_steps: with ``log_train``, also log running values every N batches (``train/<name>_step``).
            They are rank 0's own values unless ``sync_train_steps=True``, which costs one all-reduce each time.
        name: the monitor's name, for several monitors side by side: its keys become ``val/<name>/ece``,
            ``val/<name>/reliability``, ... instead of ``val/ece``. Two monitors of one Trainer that would write
            the same keys (the same ``name``, or both without one) are refused at setup.
        progress_bar: the validation values shown in the progress bar, by name (``"cross_entropy"``,
            ``"ece"``, ...); ``()`` shows none.
        log_figures: send reliability diagrams and tables to MLflow loggers.
        figures_every_n_epochs: during ``fit``, draw the diagrams of every N-th validation (the first, the
            (N+1)-th, ...), and at the end of the fit those of the last validation and of the best one (lowest
            cross-entropy) if they were skipped, each at its own step. Validations outside ``fit`` and tests
            always get theirs.
        upload_in_background: render and upload figures on the MLflow outbox's thread without waiting for them
            (rank 0); with False, each epoch end waits for its figures, at most the outbox's ``max_wait_s``.
        nan_policy: ``"raise"`` stops at a batch with NaN or +inf predictions, naming it; ``"warn"`` skips and
            counts such batches (logged as ``<stage>/skipped_batches``).
        validate_args: check every batch's shapes and values (O(rows)).
        calibration_estimators: also log ``adaptive_ece`` (equal-mass bins, with ``adaptive_ece_bound``),
            ``adaptive_rmsce``, ``debiased_rmsce`` and ``smooth_ece``, draw the smooth reliability curve with its
            band, and log an equal-mass reliability diagram (``<stage>/reliability_equal_mass``).
        bootstrap_replicates: with B replicates, log streaming Poisson-bootstrap 95% intervals
            ``cross_entropy_lower/upper``, ``accuracy_lower/upper``, ``ece_lower/upper`` and draw per-bin
            whiskers (Wilson intervals of each bin's accuracy). The ECE interval misses a calibrated model's
            ECE of 0 (the binned ECE is biased upward); ``calibration_test`` gives an interval that covers.
            Multiclass only.
        temperature_scan: log the best ``temperature``, the ``calibrated_nll`` at it and ``miscalibration``
            (cross-entropy minus calibrated NLL: the nats that temperature scaling alone would remove).
            Multiclass only.
        calibration_test: log ``calibration_p_value`` (of the test that the model is calibrated, with
            ``calibration_statistic`` and ``calibration_degrees_of_freedom``), and the debiased l2 calibration
            error ``calibration_l2`` with its 95% interval ``calibration_l2_lower/upper`` (the upper end also
            bounds the ECE). Multiclass only.

    Every extra keeps fixed-size sum state and joins the same single all-reduce at epoch end, and reads no
    logits of its own: XentMetrics' pass feeds it each row's confidence, correctness and cross-entropy
    (``XentMetrics.update(..., extras=...)``), and the temperature scan the same cache-sized chunks. Their own
    arithmetic still costs: the bootstrap draws B weights per row, the scan exponentiates each chunk once per
    grid temperature (README, *Performance*). See ``docs/calibration.md`` for when to prefer which estimator.

    Example:
        >>> coarse, fine = XentMonitor(n_bins=5, name="coarse"), XentMonitor(n_bins=30, name="fine")
        >>> coarse.key("validate", "ece"), fine.key("validate", "reliability")
        ('val/coarse/ece', 'val/fine/reliability')
        >>> coarse.state_key != fine.state_key
        True
    """

    def __init__(
        self,
        task: str = "multiclass",
        n_bins: int = 15,
        class_dim: int = 1,
        ignore_index: int | None = None,
        num_labels: int | None = None,
        calibration_mode: str = "top_label",
        preds_keys: Mapping[str, str] | None = None,
        target_key: str = "target",
        reference_key: str = "reference",
        extract: Extract | None = None,
        input_format: str = "logits",
        log_train: bool = False,
        train_every_n_steps: int | None = None,
        sync_train_steps: bool = False,
        name: str | None = None,
        progress_bar: Sequence[str] = ("cross_entropy", "ece"),
        log_figures: bool = True,
        figures_every_n_epochs: int = 1,
        upload_in_background: bool = True,
        nan_policy: str = "raise",
        validate_args: bool = True,
        calibration_estimators: bool = False,
        bootstrap_replicates: int | None = None,
        temperature_scan: bool = False,
        calibration_test: bool = False,
    ) -> None:
        if nan_policy not in NAN_POLICIES:
            raise ValueError(f"`nan_policy` must be one of {NAN_POLICIES}, got {nan_policy!r}.")
        if train_every_n_steps is not None and (not isinstance(train_every_n_steps, int) or train_every_n_steps < 1):
            raise ValueError(f"`train_every_n_steps` must be a positive int or None, got {train_every_n_steps!r}.")
        if not isinstance(figures_every_n_epochs, int) or figures_every_n_epochs < 1:
            raise ValueError(f"`figures_every_n_epochs` must be a positive int, got {figures_every_n_epochs!r}.")
        if name is not None and (not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.\-]+", name)):
            raise ValueError(
                f"`name` must be None or a non-empty string of letters, digits, '_', '-' and '.', got {name!r}."
            )
        if isinstance(progress_bar, str):
            raise ValueError(f"`progress_bar` must be a sequence of value names, got the string {progress_bar!r}.")
        self.options = MetricOptions(
            task=task,
            n_bins=n_bins,
            class_dim=class_dim,
            ignore_index=ignore_index,
            num_labels=num_labels,
            calibration_mode=calibration_mode,
            input_format=input_format,
            validate_args=validate_args,
            calibration_estimators=calibration_estimators,
            bootstrap_replicates=bootstrap_replicates,
            temperature_scan=temperature_scan,
            calibration_test=calibration_test,
        )
        self.metrics = {stage: self.options.xent_metrics() for stage in STAGE_PREFIXES}
        self.extras = {stage: self.options.extras() for stage in STAGE_PREFIXES}
        self.source = PredictionSource(preds_keys, target_key, reference_key, extract, input_format)
        self.name = name
        self.progress_bar = tuple(progress_bar)
        self.log_train = log_train
        self.train_every_n_steps = train_every_n_steps
        self.sync_train_steps = sync_train_steps
        self.log_figures = log_figures
        self.figures_every_n_epochs = figures_every_n_epochs
        self.upload_in_background = upload_in_background
        self.nan_policy = nan_policy
        self.skipped_batches = dict.fromkeys(STAGE_PREFIXES, 0)
        self.budgets = {stage: SampleBudget() for stage in STAGE_PREFIXES}
        # Per stage, the step of the last epoch logged: steps only go forward (see _epoch_step).
        self.last_steps: dict[str, int] = {}
        self.held_figures = HeldFigures()
        self._state_key: str | None = None

    @property
    def state_key(self) -> str:
        # Lightning reads it at every hook call (to name the hook in its profiler); the options never change.
        if self._state_key is None:
            self._state_key = self._generate_state_key(name=self.name, **asdict(self.options))
        return self._state_key

    def key(self, stage: str, value: str) -> str:
        """The key this monitor logs ``value`` of ``stage`` (``"train"``, ``"validate"``, ``"test"``) under."""
        return "/".join(filter(None, (STAGE_PREFIXES[stage], self.name, value)))

    # ---- Lightning hooks -------------------------------------------------------------------------------

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        clashing = [other for other in trainer.callbacks if isinstance(other, XentMonitor) and other.name == self.name]
        if len(clashing) > 1:
            raise ValueError(
                f"XentMonitor: {len(clashing)} monitors of this Trainer would log the same keys "
                f"({self.key('validate', 'ece')!r}, {self.key('validate', 'reliability')!r}, ...) and average each "
                f"other's values: give each its own `name=` (they all have name={self.name!r})."
            )
        for stage, metric in self.metrics.items():
            metric.to(pl_module.device)
            for extra in self.extras[stage].values():
                extra.to(pl_module.device)

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        # A ResilientMLFlowLogger closes its own outbox in finalize, which Lightning calls right after this.
        for logger in trainer.loggers:
            outbox = outbox_for(logger)
            if outbox is not None and not owns_outbox(logger):
                outbox.close()

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero:
            for held in self.held_figures.release():
                self._send_figures(trainer, held.prefix, held.figures, held.step)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.log_train:
            self._start_epoch("train", trainer.train_dataloader)

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if not self.log_train:
            return
        self._update("train", outputs, batch, batch_idx, 0)
        if self.train_every_n_steps and (batch_idx + 1) % self.train_every_n_steps == 0:
            self._log_running_train_values(trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.log_train:
            self._end_epoch("train", trainer, pl_module)

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._start_epoch("validate", trainer.val_dataloaders)

    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if not trainer.sanity_checking:
            self._update("validate", outputs, batch, batch_idx, dataloader_idx)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._end_epoch("validate", trainer, pl_module)

    def on_test_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start_epoch("test", trainer.test_dataloaders)

    def on_test_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self._update("test", outputs, batch, batch_idx, dataloader_idx)

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._end_epoch("test", trainer, pl_module)

    def state_dict(self) -> dict[str, Any]:
        return {
            "metrics": {stage: metric.state_dict() for stage, metric in self.metrics.items()},
            "extras": {stage: {n: m.state_dict() for n, m in extras.items()} for stage, extras in self.extras.items()},
            "skipped_batches": dict(self.skipped_batches),
            "last_steps": dict(self.last_steps),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        for stage, metric_state in state_dict["metrics"].items():
            self.metrics[stage].load_state_dict(metric_state)
        for stage, extras in state_dict.get("extras", {}).items():
            for name, extra_state in extras.items():
                if name in self.extras[stage]:
                    self.extras[stage][name].load_state_dict(extra_state)
        self.skipped_batches.update(state_dict["skipped_batches"])
        self.last_steps.update(state_dict.get("last_steps", {}))

    # ---- one batch in, one epoch out -------------------------------------------------------------------

    def _start_epoch(self, stage: str, dataloaders: object) -> None:
        self.metrics[stage].reset()
        for extra in self.extras[stage].values():
            extra.reset()
        self.skipped_batches[stage] = 0
        self.budgets[stage].reset(dataloaders)

    def _update(self, stage: str, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int) -> None:
        predictions = self.source.read(outputs, batch, stage)
        rows = self.budgets[stage].rows_to_keep(dataloader_idx, predictions.preds.shape[0])
        if rows == 0:
            return
        if rows < predictions.preds.shape[0]:
            predictions = predictions.head(rows)
        metric = self.metrics[stage]
        if predictions.head_weight is not None:
            self._update_from_hidden(stage, metric, predictions)
            return
        extras = list(self.extras[stage].values())
        for each in (metric, *extras):
            each.input_format = predictions.input_format
        try:
            # One pass over the logits: the extras are fed from its per-row statistics.
            metric.update(predictions.preds, predictions.target, reference=predictions.reference, extras=extras)
        except ValueError as error:
            where = f"{stage} batch {batch_idx} (dataloader {dataloader_idx})"
            if self.nan_policy == "warn" and _has_nan_or_posinf(predictions):
                self.skipped_batches[stage] += 1
                warnings.warn(f"XentMonitor: skipped {where}: {error}", UserWarning, stacklevel=2)
                return
            raise ValueError(f"XentMonitor: {where}: {error}") from error

    def _update_from_hidden(self, stage: str, metric: XentMetrics, predictions: Predictions) -> None:
        if "temperature_scan" in self.extras[stage]:
            raise ValueError(
                f"XentMonitor: the {stage} step returned hidden states, whose logits are never held whole, which "
                "the temperature scan needs; turn off `temperature_scan` or return logits."
            )
        extras = list(self.extras[stage].values())
        for each in (metric, *extras):
            each.input_format = "logits"
        metric.update_from_hidden(
            predictions.preds, predictions.head_weight, predictions.target, predictions.head_bias, extras=extras
        )

    def _end_epoch(self, stage: str, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        metric, extras = self.metrics[stage], self.extras[stage]
        prefix = STAGE_PREFIXES[stage]
        with synced_together([metric, *extras.values()]):  # the epoch's one collective
            counted = metric.count.item()
            values = metric.values() if counted else {}
            if counted:
                values.update(extra_values(extras))
                figures = _figure_inputs(metric, extras, values)
        if self.skipped_batches[stage]:
            values["skipped_batches"] = torch.tensor(float(self.skipped_batches[stage]))
            if not counted:
                values.update(self._nan_for_a_skipped_epoch(prefix, stage, metric))
        if values:
            self._log_values(stage, values, pl_module)
        if not counted:
            if self.skipped_batches[stage]:
                return
            warnings.warn(
                f"XentMonitor: no {prefix} samples were counted this epoch (empty dataloader, or every target "
                "ignored); no metrics were logged.",
                UserWarning,
                stacklevel=2,
            )
            return
        step = self.last_steps[stage]
        if self.log_figures and trainer.is_global_zero:
            if stage == "validate" and trainer.state.fn == "fit":
                for held in self.held_figures.hold(prefix, step, figures, self.figures_every_n_epochs):
                    self._send_figures(trainer, held.prefix, held.figures, held.step)
            else:
                self._send_figures(trainer, prefix, figures, step)

    def _log_values(self, stage: str, values: dict[str, Tensor], pl_module: pl.LightningModule) -> None:
        logged = {name: (self.key(stage, name), value.item()) for name, value in values.items()}
        step_changed = self._choose_step(stage, pl_module.trainer)
        if step_changed:
            # Lightning logs every value of this epoch at a logged "step". With "max", two monitors that would
            # choose differently agree on the later step.
            pl_module.log("step", float(self.last_steps[stage]), on_step=False, on_epoch=True, reduce_fx="max")
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            _quiet_resync_advice([key for key, _ in logged.values()] + (["step"] if step_changed else []))
        for name, (key, value) in logged.items():
            shown = stage == "validate" and name in self.progress_bar
            pl_module.log(key, value, on_step=False, on_epoch=True, sync_dist=False, prog_bar=shown)

    def _choose_step(self, stage: str, trainer: pl.Trainer) -> bool:
        """Sets the step of this epoch's scalars, diagram and table: Lightning's, unless an earlier epoch of this
        stage already has it (a validation outside ``fit``, a second test), then the next one. True if changed.
        """
        # Lightning logs an epoch's scalars at this count (`_LoggerConnector.log_metrics`); it has no public name.
        lightning_step = trainer.fit_loop.epoch_loop._batches_that_stepped
        last = self.last_steps.get(stage)
        self.last_steps[stage] = lightning_step if last is None or lightning_step > last else last + 1
        return self.last_steps[stage] != lightning_step

    def _nan_for_a_skipped_epoch(self, prefix: str, stage: str, metric: Metric) -> dict[str, Tensor]:
        # NaN, not nothing: ModelCheckpoint(monitor=...) stops the run when its key is missing.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            names = list(metric.values())
        warnings.warn(
            f"XentMonitor: every {prefix} batch was skipped this epoch ({self.skipped_batches[stage]} with NaN or "
            f"+inf predictions, nan_policy='warn'); logging NaN for {', '.join(names)}.",
            UserWarning,
            stacklevel=3,
        )
        return {name: torch.tensor(float("nan")) for name in names}

    def _log_running_train_values(self, trainer: pl.Trainer) -> None:
        # Straight to the loggers: pl_module.log would hold step values back to Trainer(log_every_n_steps).
        metric = self.metrics["train"]
        with synced_together([metric] if self.sync_train_steps else []):
            values = metric.values() if metric.count.item() else {}
        if not trainer.is_global_zero or not values:
            return
        step_values = {f"train/{name}_step": value.item() for name, value in values.items()}
        for logger in trainer.loggers:
            logger.log_metrics(step_values, step=trainer.global_step)

    def _send_figures(self, trainer: pl.Trainer, prefix: str, figures: FigureInputs, step: int) -> None:
        name_part = f"/{self.name}" if self.name else ""
        for logger in trainer.loggers:
            outbox = outbox_for(logger)
            if outbox is None:
                continue
            key = f"{prefix}{name_part}/reliability"
            queue_reliability_figures(
                outbox, figures.table, key=key, step=step, ece=figures.ece, smooth_curve=figures.smooth_curve
            )
            if figures.equal_mass_table is not None:
                queue_reliability_figures(
                    outbox,
                    figures.equal_mass_table,
                    key=f"{prefix}{name_part}/reliability_equal_mass",
                    step=step,
                    ece=figures.adaptive_ece,
                    binning="equal_mass",
                )
            if not self.upload_in_background:
                outbox.flush()


@dataclass
class FigureInputs:
    """What one epoch's reliability figures are drawn from, copied to the CPU while the states are synced."""

    table: dict[str, Tensor]
    ece: float
    cross_entropy: float = float("nan")
    smooth_curve: dict[str, Tensor] | None = None
    equal_mass_table: dict[str, Tensor] | None = None
    adaptive_ece: float | None = None


@dataclass
class StepFigures:
    prefix: str
    step: int
    figures: FigureInputs


class HeldFigures:
    """Which validation diagrams of a fit to draw: every N-th at once, and the last and the best at the end.

    Example:
        >>> held, figures = HeldFigures(), [FigureInputs(table={}, ece=0.1, cross_entropy=ce) for ce in (3, 1, 2)]
        >>> [[f.step for f in held.hold("val", step, f, every_n=2)] for step, f in zip((10, 20, 30), figures)]
        [[10], [], [30]]
        >>> [f.step for f in held.release()]   # the best, at step 20; the last, at 30, was drawn already
        [20]
    """

    def __init__(self) -> None:
        self.count = 0
        self.best: StepFigures | None = None
        self.last: StepFigures | None = None
        self.sent: set[tuple[str, int]] = set()

    def hold(self, prefix: str, step: int, figures: FigureInputs, every_n: int) -> list[StepFigures]:
        """Notes a validation's figures; returns them when they are to be drawn now."""
        current = StepFigures(prefix, step, figures)
        if self.best is None or figures.cross_entropy < self.best.figures.cross_entropy:
            self.best = current
        self.last = current
        self.count += 1
        if (self.count - 1) % every_n:
            return []
        self.sent.add((prefix, step))
        return [current]

    def release(self) -> list[StepFigures]:
        """The best and the last of the fit, those not drawn yet, in step order; then forgets the fit."""
        pending = {(held.prefix, held.step): held for held in (self.best, self.last) if held is not None}
        unsent = [held for key, held in sorted(pending.items(), key=lambda item: item[0][1]) if key not in self.sent]
        self.__init__()
        return unsent


def _quiet_resync_advice(keys: Iterable[str]) -> None:
    # Lightning advises `sync_dist=True` for every value logged on epoch level under DDP. These values were synced
    # already, by the epoch's one packed all-reduce; syncing them again would cost a collective per key. The
    # filter names only these keys, so advice about other values still shows.
    names = "|".join(re.escape(key) for key in sorted(keys))
    warnings.filterwarnings(
        "ignore", message=rf"It is recommended to use `self\.log\('(?:{names})', \.\.\., sync_dist=True\)`"
    )


def _figure_inputs(metric: XentMetrics, extras: dict[str, Metric], values: dict[str, Tensor]) -> FigureInputs:
    bootstrap, estimators = extras.get("bootstrap"), extras.get("calibration_estimators")
    table = (bootstrap or metric).reliability_table()  # the bootstrap's table adds per-bin CI columns
    figures = FigureInputs(table=_to_cpu(table), ece=values["ece"].item(), cross_entropy=values["cross_entropy"].item())
    if estimators is not None:
        figures.smooth_curve = _to_cpu(estimators.smooth_curve())
        figures.equal_mass_table = _to_cpu(estimators.equal_mass_table())
        figures.adaptive_ece = values["adaptive_ece"].item()
    return figures


def _to_cpu(columns: Mapping[str, Tensor]) -> dict[str, Tensor]:
    return {key: value.cpu() if isinstance(value, Tensor) else value for key, value in columns.items()}


def _has_nan_or_posinf(predictions: Predictions) -> bool:
    preds = predictions.preds
    return bool(torch.isnan(preds).any() or torch.isposinf(preds).any())
