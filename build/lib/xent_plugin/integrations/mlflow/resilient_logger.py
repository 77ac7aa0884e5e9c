"""An MLFlowLogger that a tracking-server outage cannot stop, and that loses no scalar to one."""

from __future__ import annotations

import json
import os
import re
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lightning_fabric.loggers.logger import _DummyExperiment, rank_zero_experiment
from lightning_fabric.utilities.logger import _add_prefix
from pytorch_lightning.loggers import MLFlowLogger
from pytorch_lightning.utilities.rank_zero import rank_zero_only

# MLflow's own limit on metrics per log_batch call; Lightning's MLFlowLogger does not split (it sends one call).
MAX_METRICS_PER_BATCH = 1000


class ResilientMLFlowLogger(MLFlowLogger):
    """``MLFlowLogger`` whose calls never raise into training.

    - Scalars are sent in batches of at most 1000 metrics, MLflow's per-call limit.
    - When a call fails (server down, network error) a warning names what was not logged, the points are
      kept, and they are re-sent, in order and with their original steps and timestamps, with the next
      call after ``retry_after_s`` seconds. While the server stays down, training is not slowed by retries.
    - At the end of the run, points that still could not be sent are written to ``unsent_path`` (JSON lines,
      one MLflow metric each) and a warning says where, so nothing is silently dropped.
    - Given the ``run_id`` of an existing run, as when training resumes from a checkpoint, it logs no point at
      a step the run already has for that key: an epoch that was logged before the interrupt but re-run
      after the resume (its checkpoint was never written) keeps its first points, and one warning says how
      many were skipped. What the run had is read once per key, before this logger first sends that key.
    - For http(s) tracking URIs, MLflow's request retries default to ``http_retries`` and the timeout to
      ``http_timeout_s`` unless the environment already sets ``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` /
      ``MLFLOW_HTTP_REQUEST_TIMEOUT``; MLflow's defaults (7 retries with exponential backoff) stall a step for
      minutes.

    Takes every argument of ``MLFlowLogger``; always pass ``tracking_uri`` (MLflow 3 refuses ``./mlruns``).

    Example:
        >>> logger = ResilientMLFlowLogger(experiment_name="demo", tracking_uri="sqlite:///:memory:")
        >>> logger.pending_metrics
        0
    """

    def __init__(
        self,
        *args: Any,
        retry_after_s: float = 30.0,
        unsent_path: str | os.PathLike | None = None,
        http_retries: int = 2,
        http_timeout_s: int = 10,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.retry_after_s = retry_after_s
        self.unsent_path = Path(unsent_path) if unsent_path is not None else None
        self._pending: list[Any] = []
        self._next_attempt = 0.0
        # Per key, the last step the run had before this logger sent that key; only for a continued run.
        self._logged_before: dict[str, int | None] | None = {} if self._run_id is not None else None
        if str(self._tracking_uri).startswith(("http://", "https://")):
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", str(http_retries))
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(int(http_timeout_s)))

    @property
    def pending_metrics(self) -> int:
        """Metric points logged while the server was unreachable and not yet delivered."""
        return len(self._pending)

    @property
    @rank_zero_experiment
    def experiment(self) -> Any:
        """The MLflow client, or a stand-in that ignores calls while the server cannot be reached."""
        try:
            return self._client_or_raise()
        except Exception as error:  # noqa: BLE001
            self._warn("the run (could not create or find it)", error)
            return _DummyExperiment()

    @property
    def name(self) -> str | None:
        try:
            return super().name
        except Exception as error:  # noqa: BLE001 - any tracking failure must not stop training
            self._warn("the experiment id (used for checkpoint paths)", error)
            return self._experiment_name

    @property
    def version(self) -> str | None:
        try:
            return super().version
        except Exception as error:  # noqa: BLE001
            self._warn("the run id (used for checkpoint paths)", error)
            return "offline"

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        from mlflow.entities import Metric

        timestamp_ms = int(time.time() * 1000)
        for key, value in _add_prefix(metrics, self._prefix, self.LOGGER_JOIN_CHAR).items():
            if not isinstance(value, str):
                self._pending.append(
                    Metric(key=_sanitize(key), value=float(value), timestamp=timestamp_ms, step=step or 0)
                )
        self._deliver(f"{len(metrics)} metrics at step {step} ({_preview(metrics)})")

    @rank_zero_only
    def log_hyperparams(self, params: Any) -> None:
        try:
            super().log_hyperparams(params)
        except Exception as error:  # noqa: BLE001
            self._warn("the hyperparameters", error)

    @rank_zero_only
    def finalize(self, status: str = "success") -> None:
        self._next_attempt = 0.0
        self._deliver("metrics kept from earlier failures")
        try:
            super().finalize(status)
        except Exception as error:  # noqa: BLE001
            self._warn(f"the run's final status ({status})", error)
        if self._pending:
            self._spool_unsent()

    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        try:
            super().after_save_checkpoint(checkpoint_callback)
        except Exception as error:  # noqa: BLE001
            self._warn("the checkpoint artifacts", error)

    def _deliver(self, what: str) -> None:
        if not self._pending or time.monotonic() < self._next_attempt:
            return
        try:
            client = self._client_or_raise()
            run_id = self._run_id
            if self._logged_before is not None:
                self._drop_steps_the_run_has(client, run_id)
            while self._pending:
                batch = self._pending[:MAX_METRICS_PER_BATCH]
                client.log_batch(run_id=run_id, metrics=batch, **self._log_batch_kwargs)
                del self._pending[: len(batch)]
        except Exception as error:  # noqa: BLE001
            self._next_attempt = time.monotonic() + self.retry_after_s
            self._warn(f"{what}; {len(self._pending)} points are kept and will be re-sent", error)

    def _drop_steps_the_run_has(self, client: Any, run_id: str) -> None:
        for key in {metric.key for metric in self._pending} - self._logged_before.keys():
            history = client.get_metric_history(run_id, key)
            self._logged_before[key] = max((point.step for point in history), default=None)
        kept, skipped = [], []
        for metric in self._pending:
            (skipped if self._run_has(metric) else kept).append(metric)
        if skipped:
            keys = dict.fromkeys(metric.key for metric in skipped)
            steps = sorted({metric.step for metric in skipped})
            warnings.warn(
                f"ResilientMLFlowLogger: not logging {len(skipped)} point{'s' * (len(skipped) > 1)} again "
                f"({_preview(keys)} at step "
                f"{', '.join(map(str, steps))}): run {run_id} had them before this logger continued it, as "
                "after a resume from an earlier checkpoint; their first values are kept.",
                UserWarning,
                stacklevel=4,
            )
        self._pending = kept

    def _run_has(self, metric: Any) -> bool:
        last_step = self._logged_before[metric.key]
        return last_step is not None and metric.step <= last_step

    def _client_or_raise(self) -> Any:
        return MLFlowLogger.experiment.fget(self)

    def _spool_unsent(self) -> None:
        path = self.unsent_path or Path.cwd() / f"mlflow_unsent_{self._run_id or 'run'}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as file:
            for metric in self._pending:
                record = {"key": metric.key, "value": metric.value, "timestamp": metric.timestamp, "step": metric.step}
                file.write(json.dumps(record) + "\n")
        warnings.warn(
            f"ResilientMLFlowLogger: {len(self._pending)} metric points could not reach MLflow; "
            f"they were written to {path}.",
            UserWarning,
            stacklevel=2,
        )
        self._pending.clear()

    def _warn(self, what: str, error: Exception) -> None:
        warnings.warn(
            f"ResilientMLFlowLogger: could not log {what} to {self._tracking_uri}: {type(error).__name__}: "
            f"{str(error)[:300]}",
            UserWarning,
            stacklevel=3,
        )


def _sanitize(key: str) -> str:
    """MLflow accepts only alphanumerics and ``_ / . -`` and space in metric names (as MLFlowLogger does)."""
    return re.sub(r"[^a-zA-Z0-9_/. -]+", "", key)


def _preview(metrics: Mapping[str, float], limit: int = 4) -> str:
    names = list(metrics)
    return ", ".join(names[:limit]) + (f", ... {len(names) - limit} more" if len(names) > limit else "")
