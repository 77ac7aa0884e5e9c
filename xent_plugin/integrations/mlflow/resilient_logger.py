"""An MLFlowLogger that a down, slow or hung tracking server cannot stop, and that loses no scalar to one."""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lightning_fabric.loggers.logger import rank_zero_experiment
from lightning_fabric.utilities.logger import _add_prefix, _convert_params, _flatten_dict
from pytorch_lightning.loggers import MLFlowLogger
from pytorch_lightning.utilities.rank_zero import rank_zero_only

from xent_plugin.integrations.mlflow.outbox import Outbox, TrackingUnavailable
from xent_plugin.integrations.mlflow.params import param_key, param_value
from xent_plugin.integrations.mlflow.store import open_store_safely

# Lightning's names for a run's end, and MLflow's.
_STATUSES = {"success": "FINISHED", "finished": "FINISHED", "failed": "FAILED"}


class ResilientMLFlowLogger(MLFlowLogger):
    """``MLFlowLogger`` whose calls never raise into training nor wait on the tracking server.

    Everything it logs goes through one :class:`~xent_plugin.integrations.mlflow.outbox.Outbox` (see there):

    - Scalars, hyperparameters, the figures XentMonitor hands it and the run's final status are sent in order
      by a worker thread, in batches within MLflow's limits; the training thread never waits for a request.
      The run itself is created on that thread too, so a server that is down at the start and comes up later
      gets everything, in order.
    - When a request fails (server down, or no answer: a hung server is treated as down), a warning names what
      is held back; it is kept and re-sent, with its original steps and timestamps, with the next call after
      ``retry_after_s`` seconds. A write whose request may have arrived is checked against the run first, so
      nothing arrives twice.
    - ``finalize`` waits while the server makes progress, and at most ``max_wait_s`` seconds without; what is
      still unsent goes to ``unsent_path`` (JSON lines; by default ``mlflow_unsent_<run id>.jsonl`` in the
      working directory) and a warning says where and how to send it
      (``python -m xent_plugin.integrations.mlflow.replay <file>``).
    - Given the ``run_id`` of an existing run, as when training resumes from a checkpoint, it first re-sends the
      spool at ``unsent_path`` if there is one, then logs no point, diagram or table at a step the run already
      has for that key: an epoch that was logged before the interrupt but re-run after the resume keeps its
      first values, and a warning says how many points were skipped.
    - For http(s) tracking URIs, MLflow's request retries default to ``http_retries`` and its timeout to
      ``http_timeout_s`` unless the environment sets ``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` /
      ``MLFLOW_HTTP_REQUEST_TIMEOUT``: the outbox does the retrying, and MLflow's defaults (7 retries with
      exponential backoff) would hold every request for minutes.
    - A ``sqlite:///`` store is created under a file lock, so runs started together in a fresh directory do not
      race to create its tables.

    ``experiment``, ``run_id`` and ``experiment_id`` open the run if needed, waiting at most ``max_wait_s``; if
    it cannot be opened, ``run_id`` is None and ``name``/``version`` (which Lightning reads for checkpoint paths)
    fall back to the experiment name and ``"offline"``. :meth:`flush` waits for what is queued.

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
        max_wait_s: float = 10.0,
        unsent_path: str | os.PathLike | None = None,
        http_retries: int = 0,
        http_timeout_s: int = 10,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.retry_after_s = retry_after_s
        self.max_wait_s = max_wait_s
        self.unsent_path = Path(unsent_path) if unsent_path is not None else None
        self._continued = self._run_id is not None
        self._outbox: Outbox | None = None
        if str(self._tracking_uri).startswith(("http://", "https://")):
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", str(http_retries))
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(int(http_timeout_s)))

    @property
    def outbox(self) -> Outbox:
        """The one queue this run's writes go through; made on first use, in the process that logs."""
        if self._outbox is None:
            self._outbox = Outbox(
                self._open_run,
                tracking_uri=self._tracking_uri,
                source="ResilientMLFlowLogger",
                continued=self._continued,
                spool_path=self.unsent_path,
                retry_after_s=self.retry_after_s,
                max_wait_s=self.max_wait_s,
                experiment_name=self._experiment_name,
            )
            spool = self._spool_of_this_run()
            if spool is not None:
                self._outbox.resend_spool(spool)
        return self._outbox

    @property
    def pending_metrics(self) -> int:
        """Metric points logged but not yet delivered."""
        return 0 if self._outbox is None else self._outbox.pending_metrics

    def flush(self, timeout_s: float | None = None) -> bool:
        """Waits until everything logged so far is sent (at most ``timeout_s``, default ``max_wait_s``, and not
        while the server is down); True when nothing is left."""
        return self.outbox.flush(timeout_s)

    @property
    @rank_zero_experiment
    def experiment(self) -> Any:
        """The MLflow client. While the run cannot be opened (within ``max_wait_s``) a warning says so, and the
        client returned is not tied to a run: calls on it reach the server, or fail, as they are."""
        try:
            client, _ = self.outbox.run()
        except TrackingUnavailable as error:
            warnings.warn(f"{error} What is logged is kept and sent when it answers.", UserWarning, stacklevel=2)
            return self._mlflow_client
        return client

    @property
    def run_id(self) -> str | None:
        self._try_to_open()
        return self._run_id

    @property
    def experiment_id(self) -> str | None:
        self._try_to_open()
        return self._experiment_id

    @property
    def name(self) -> str | None:
        return self.experiment_id or self._experiment_name

    @property
    def version(self) -> str | None:
        return self.run_id or "offline"

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        values = {
            _sanitize(key): value
            for key, value in _add_prefix(metrics, self._prefix, self.LOGGER_JOIN_CHAR).items()
            if not isinstance(value, str)
        }
        self.outbox.log_metrics(values, step or 0)

    @rank_zero_only
    def log_hyperparams(self, params: Any) -> None:
        flat = _flatten_dict(_convert_params(params))
        self.outbox.log_params({param_key(key): param_value(value) for key, value in flat.items()})

    @rank_zero_only
    def finalize(self, status: str = "success") -> None:
        if self._outbox is None:
            return  # nothing was logged, so there is no run to end
        if self._checkpoint_callback:
            callback = self._checkpoint_callback
            self.outbox.call(
                "the checkpoint artifacts", lambda client, run_id: self._scan_and_log_checkpoints(callback)
            )
        self.outbox.set_terminated(_STATUSES.get(status, status))
        self.outbox.close()

    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        if self._log_model == "all" or self._log_model is True and checkpoint_callback.save_top_k == -1:
            self.outbox.call(
                "the checkpoint artifacts",
                lambda client, run_id: self._scan_and_log_checkpoints(checkpoint_callback),
            )
        elif self._log_model is True:
            self._checkpoint_callback = checkpoint_callback

    def __getstate__(self) -> dict[str, Any]:
        # ddp_spawn pickles the logger into its workers; each process makes its own outbox (threads and locks).
        return {**self.__dict__, "_outbox": None}

    def _open_run(self) -> tuple[Any, str]:
        open_store_safely(self._tracking_uri)
        client = MLFlowLogger.experiment.fget(self)
        return client, self._run_id

    def _try_to_open(self) -> None:
        if rank_zero_only.rank != 0 or self._initialized:
            return
        try:
            self.outbox.run()
        except TrackingUnavailable:
            pass  # the outbox warned; the callers fall back

    def _spool_of_this_run(self) -> Path | None:
        if not self._continued:
            return None
        path = self.unsent_path or Path.cwd() / f"mlflow_unsent_{self._run_id}.jsonl"
        return path if path.is_file() else None


def _sanitize(key: str) -> str:
    """MLflow accepts only alphanumerics and ``_ / . -`` and space in metric names (as MLFlowLogger does)."""
    return re.sub(r"[^a-zA-Z0-9_/. -]+", "", key)
