"""The one way anything reaches an MLflow run: kept when it fails, re-sent in order, spooled when it cannot be sent.

Scalars (:class:`~xent_plugin.integrations.mlflow.ResilientMLFlowLogger`), reliability diagrams and tables
(XentMonitor), the config (``xent-train``) and the run's final status all go through an :class:`Outbox`:

- **Off the training thread.** Every write is queued and sent, in order, by one worker thread, so a slow or hung
  tracking server never holds training. The training thread waits only where it asks to (:meth:`Outbox.flush`,
  :meth:`Outbox.run`), and never longer than ``max_wait_s``; a server that has not answered a request for
  ``max_wait_s`` is treated as down.
- **Kept and retried.** A write that fails stays at the head of the queue, with everything behind it, and is tried
  again with the first write after ``retry_after_s`` seconds (a circuit breaker: while the server is down, one
  attempt per ``retry_after_s``, not one per write). A warning names each write that is held back.
- **Idempotent.** Metric points keep their timestamps and images their names, so a write whose request may have
  reached the server (it timed out, or came from a spool) is checked against the run before it is sent again:
  points the run already has at that key, step and timestamp are dropped, and an image already stored under its
  name is not uploaded twice. A table file sent again replaces itself, and the run's ``mlflow.loggedArtifacts``
  tag, read before each change, lists it once.
- **Spooled.** What is still unsent when the outbox closes goes to a JSON-lines spool file; a continued run sends
  a spool before anything new (:meth:`Outbox.resend_spool`), and ``python -m xent_plugin.integrations.mlflow.replay``
  sends one into its run.
- **Resume-aware.** On a run that this outbox continues (``continued=True``), a metric point at a step the run
  already had for that key, a diagram of a (key, step) it had, and a table file it had are not logged again: a
  run resumed from a checkpoint older than its last logged epoch keeps the first values of the re-run epochs. (A
  table file it had is still listed in the tag, in case the earlier process stopped between the two.)

MLflow's own limits (metrics and params per request) come from :mod:`mlflow.utils.validation`.
"""

from __future__ import annotations

import base64
import json
import os
import tempfile
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils.validation import MAX_METRICS_PER_BATCH, MAX_PARAMS_TAGS_PER_BATCH

from xent_plugin.integrations.mlflow.artifacts import (
    TableContent,
    image_artifact_path,
    list_as_tables,
    logged_image_steps,
    mlflow_key,
    table_tag_full_message,
    upload_image,
    upload_table,
)

RunOpener = Callable[[], tuple[MlflowClient, str]]

# Images waiting for the server; a reliability diagram is some tens of KB, so this bounds the memory they take.
MAX_KEPT_IMAGES = 200
SPOOL_FORMAT = 1
# MLflow error codes that no retry can change: the write itself is refused.
_REFUSED = {"INVALID_PARAMETER_VALUE", "BAD_REQUEST", "RESOURCE_DOES_NOT_EXIST", "INVALID_STATE"}


class TrackingUnavailable(ConnectionError):
    """The MLflow run could not be opened within the time the caller may wait."""


class Outbox:
    """Sends writes to one MLflow run in order, from a worker thread, never raising into the caller.

    Args:
        open_run: returns ``(client, run_id)``, creating the run if needed; called on the worker thread until it
            succeeds.
        tracking_uri: where the run lives, for messages and the spool.
        source: who logs, for messages (``"ResilientMLFlowLogger"``).
        continued: the run existed before this outbox (a resume): skip what it already has (see the module).
        spool_path: where :meth:`close` writes what is unsent; by default ``mlflow_unsent_<run id>.jsonl`` in the
            working directory.
        retry_after_s: after a failure, the next attempt waits for this long and for the next write or flush.
        max_wait_s: the longest a :meth:`flush` or :meth:`run` holds the caller, and how long a request may go
            unanswered before the server counts as down.
        experiment_name: the experiment a replayed spool creates its run in when the run was never created.

    Example:
        >>> from unittest.mock import Mock
        >>> client = Mock(spec=MlflowClient)
        >>> outbox = Outbox(lambda: (client, "run-id"), tracking_uri="sqlite:///mlflow.db", source="demo")
        >>> outbox.log_metrics({"val/ece": 0.1}, step=3)
        >>> outbox.flush()
        True
        >>> [(metric.key, metric.step) for metric in client.log_batch.call_args.kwargs["metrics"]]
        [('val/ece', 3)]
    """

    def __init__(
        self,
        open_run: RunOpener,
        *,
        tracking_uri: str,
        source: str,
        continued: bool = False,
        spool_path: str | os.PathLike | None = None,
        retry_after_s: float = 30.0,
        max_wait_s: float = 10.0,
        experiment_name: str | None = None,
    ) -> None:
        for name, value in (("retry_after_s", retry_after_s), ("max_wait_s", max_wait_s)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise ValueError(f"`{name}` must be a number of seconds >= 0, got {value!r}.")
        self._open_run = open_run
        self.tracking_uri = tracking_uri
        self.source = source
        self.spool_path = Path(spool_path) if spool_path is not None else None
        self.retry_after_s = float(retry_after_s)
        self.max_wait_s = float(max_wait_s)
        self.experiment_name = experiment_name
        self.run_id: str | None = None
        self.failed: list[str] = []
        self._client: MlflowClient | None = None
        self._contents = RunContents(continued)
        self._queue: deque[Write] = deque()
        self._cond = threading.Condition()
        self._worker: threading.Thread | None = None
        self._failing = False
        self._last_error = ""
        self._next_attempt = 0.0
        self._kicked = False
        self._in_flight_since: float | None = None
        self._completed = 0
        self._messages: list[str] = []
        self._spooled_from: list[Path] = []

    # ---- what callers send ------------------------------------------------------------------------------

    def log_metrics(self, metrics: Mapping[str, float], step: int, *, timestamp_ms: int | None = None) -> None:
        """Queues the points ``metrics`` at ``step``, stamped now unless ``timestamp_ms`` is given."""
        timestamp_ms = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
        points = [Metric(key, float(value), timestamp_ms, step) for key, value in metrics.items()]
        self.put(MetricPoints(points, f"{len(points)} metrics at step {step} ({_preview(metrics)})"))

    def log_image(self, key: str, step: int, render: Callable[[], bytes], *, what: str) -> None:
        """Queues an image of ``key`` at ``step`` on the run's image slider; ``render()`` makes its PNG on the
        worker thread (``what`` names it in messages)."""
        self.put(ImageWrite(key, step, int(time.time() * 1000), what, render=render))

    def log_tables(self, tables: Mapping[str, TableContent], *, what: str) -> None:
        """Queues tables, by artifact path, as ``mlflow.log_table`` logs them (see
        :func:`~xent_plugin.integrations.mlflow.artifacts.upload_table` and
        :func:`~xent_plugin.integrations.mlflow.artifacts.list_as_tables`), so the UI shows each as a table; a
        continued run keeps a file it already had."""
        self.put(TablesWrite(dict(tables), what))

    def log_params(self, params: Mapping[str, str], *, what: str = "the hyperparameters") -> None:
        """Queues params; keys the run already has are not sent again (MLflow refuses to change a param), and a
        warning names those with another value."""
        self.put(ParamsWrite(dict(params), what))

    def log_config(self, params: Mapping[str, str], config_yaml: str, overrides: str) -> None:
        """Queues a run's config: ``params``, ``config.yaml`` (``config_resume_<n>.yaml`` on a continued run) and
        the ``xent_train.overrides`` tag."""
        self.put(ConfigWrite(dict(params), config_yaml, overrides, resume=self._contents.continued))

    def set_terminated(self, status: str) -> None:
        """Queues the run's end: ``status`` (``FINISHED``, ``FAILED``, ``KILLED``) with the end time of now."""
        self.put(TerminateWrite(status, int(time.time() * 1000)))

    def call(self, what: str, send: Callable[[MlflowClient, str], object]) -> None:
        """Queues ``send(client, run_id)``; it cannot be spooled, so it is lost, with a warning, if still unsent
        at :meth:`close`."""
        self.put(CallWrite(what, send))

    def refuse(self, what: str, error: Exception) -> None:
        """Reports ``what`` as not logged because of ``error``, raised before it could be queued."""
        self.failed.append(what)
        warnings.warn(
            f"{self.source}: could not log {what} ({type(error).__name__}: {error}); it is dropped.",
            UserWarning,
            stacklevel=3,
        )

    def put(self, write: Write) -> None:
        """Queues ``write`` behind the writes before it and returns at once."""
        with self._cond:
            images = sum(isinstance(queued, ImageWrite) for queued in self._queue)
            if isinstance(write, ImageWrite) and images >= MAX_KEPT_IMAGES:
                self.failed.append(write.what)
                self._messages.append(
                    f"{self.source}: could not log {write.what} to {self.tracking_uri}: {MAX_KEPT_IMAGES} images "
                    "already wait for the server; it is dropped."
                )
            else:
                self._queue.append(write)
                if self._failing:
                    self._hold_back(write)
                self._kick()
        self._warn_pending_messages()

    def resend_spool(self, path: str | os.PathLike) -> int:
        """Queues every write in the spool file ``path`` (from :meth:`close`), to be sent before anything queued
        after; a write the run already has is not sent twice. Once they are all sent the file is deleted. Returns
        the number of writes queued."""
        path = Path(path)
        _, writes = read_spool(path)
        for write in writes:
            self.put(write)
        self._spooled_from.append(path)
        self.put(SpoolDone(path))
        return len(writes)

    # ---- waiting, and the end ---------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Writes not yet sent."""
        with self._cond:
            return len(self._queue)

    @property
    def pending_metrics(self) -> int:
        """Metric points not yet sent."""
        with self._cond:
            return sum(len(write.points) for write in self._queue if isinstance(write, MetricPoints))

    def flush(self, timeout_s: float | None = None) -> bool:
        """Waits until every queued write is sent, at most ``timeout_s`` (default ``max_wait_s``) and not at all
        while the server is down or has not answered for ``max_wait_s``. True when nothing is left."""
        done = self._wait_until_sent(self.max_wait_s if timeout_s is None else timeout_s, while_progressing=False)
        self._warn_pending_messages()
        return done

    def run(self, timeout_s: float | None = None) -> tuple[MlflowClient, str]:
        """The client and run id, opening the run if needed; waits as :meth:`flush` does, then raises
        :class:`TrackingUnavailable`."""
        if self._client is None:
            with self._cond:
                if not self._queue:
                    self._queue.append(OpenRun())
                self._kick()
            self._wait_until(lambda: self._client is not None, self.max_wait_s if timeout_s is None else timeout_s)
            self._warn_pending_messages()
        if self._client is None:
            reason = self._last_error or "no answer"
            raise TrackingUnavailable(
                f"{self.source}: the MLflow run at {self.tracking_uri} cannot be opened now ({reason})."
            )
        return self._client, self.run_id

    def close(self, timeout_s: float | None = None) -> Path | None:
        """Tries once more to send what is queued, waiting while the server makes progress (and at most
        ``timeout_s``, default ``max_wait_s``, without progress), then spools what is left and says where.

        The outbox stays usable: a later write starts the worker again. Returns the spool file, if one was written.
        """
        with self._cond:
            self._next_attempt = 0.0
        self._wait_until_sent(self.max_wait_s if timeout_s is None else timeout_s, while_progressing=True)
        with self._cond:
            left = [write for write in self._queue if not isinstance(write, (OpenRun, SpoolDone))]
            self._queue.clear()
        spool = self._spool(left) if left else None
        self._warn_pending_messages()
        return spool

    # ---- the worker ---------------------------------------------------------------------------------------

    def _kick(self) -> None:
        self._kicked = True
        if self._worker is None or not self._worker.is_alive():
            # A daemon thread: a request hung on a stopped server must not keep the process alive at exit.
            self._worker = threading.Thread(target=self._work, name=f"{self.source}-outbox", daemon=True)
            self._worker.start()
        self._cond.notify_all()

    def _ready(self) -> bool:
        if not self._queue:
            return False
        return not self._failing or (self._kicked and time.monotonic() >= self._next_attempt)

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._ready():
                    backoff = self._next_attempt - time.monotonic()
                    self._cond.wait(backoff if self._failing and self._kicked and backoff > 0 else None)
                write = self._queue[0]
                self._in_flight_since = time.monotonic()
            error = self._send(write)
            with self._cond:
                self._in_flight_since = None
                self._completed += 1
                if error is None or _refused(error):
                    if self._queue and self._queue[0] is write:
                        self._queue.popleft()
                    if error is not None:
                        self.failed.append(write.what)
                        self._messages.append(
                            f"{self.source}: MLflow at {self.tracking_uri} refused {write.what} "
                            f"({type(error).__name__}: {str(error)[:300]}); it is dropped."
                        )
                    else:
                        self._failing = False
                else:
                    self._last_error = f"{type(error).__name__}: {str(error)[:300]}"
                    self._failing = True
                    self._next_attempt = time.monotonic() + self.retry_after_s
                    self._kicked = False
                    for queued in self._queue:
                        self._hold_back(queued)
                self._messages.extend(self._contents.take_notes())
                self._cond.notify_all()

    def _send(self, write: Write) -> Exception | None:
        try:
            if self._client is None:
                self._client, self.run_id = self._open_run()
            write.send(self._client, self.run_id, self._contents)
        except Exception as error:  # noqa: BLE001 - every failure is reported, none reaches training
            write.uncertain = True
            return error
        return None

    def _hold_back(self, write: Write) -> None:
        if write.held_back or not write.what:
            return
        write.held_back = True
        self.failed.append(write.what)
        self._messages.append(
            f"{self.source}: could not log {write.what} to {self.tracking_uri} ({self._last_error}); "
            "kept, and re-sent in order when the server answers."
        )

    def _stalled(self) -> bool:
        started = self._in_flight_since
        return started is not None and time.monotonic() - started > self.max_wait_s

    def _wait_until_sent(self, timeout_s: float, *, while_progressing: bool) -> bool:
        with self._cond:
            if self._queue:
                self._kick()
        return self._wait_until(lambda: not self._queue, timeout_s, while_progressing=while_progressing)

    def _wait_until(self, done: Callable[[], bool], timeout_s: float, *, while_progressing: bool = False) -> bool:
        deadline = time.monotonic() + timeout_s
        with self._cond:
            progress = self._completed
            while not done():
                if self._failing and not self._ready():
                    return False  # down: the next attempt waits for the backoff
                if self._stalled():
                    return False  # hung: as good as down
                if while_progressing and self._completed != progress:
                    progress, deadline = self._completed, time.monotonic() + timeout_s
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(min(remaining, 0.5))
            return True

    # ---- the spool ----------------------------------------------------------------------------------------

    def _spool(self, writes: list[Write]) -> Path:
        path = self.spool_path or Path.cwd() / f"mlflow_unsent_{self.run_id or 'run'}.jsonl"
        records, lost = [], []
        for write in writes:
            try:
                record = write.record()
            except Exception as error:  # noqa: BLE001 - an image that cannot even be rendered
                record = None
                lost.append(f"{write.what} ({type(error).__name__}: {error})")
            if record is None:
                lost.append(write.what)
            else:
                records.extend(record)
        header = {
            "kind": "run",
            "format": SPOOL_FORMAT,
            "tracking_uri": self.tracking_uri,
            "run_id": self.run_id,
            "experiment_name": self.experiment_name,
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written beside and renamed over, so a spool this outbox re-sends is replaced, never half-written.
        with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", delete=False) as file:
            for record in [header, *records]:
                file.write(json.dumps(record) + "\n")
        os.replace(file.name, path)
        for earlier in self._spooled_from:
            if earlier != path:
                earlier.unlink(missing_ok=True)
        self._spooled_from = []
        if lost:
            self._messages.append(f"{self.source}: could not log and could not spool: {', '.join(lost)}.")
        self._messages.append(
            f"{self.source}: {len(writes) - len(lost)} writes could not reach MLflow at {self.tracking_uri} "
            f"({_preview_writes(writes)}); they were written to {path}. Send them with: "
            f"python -m xent_plugin.integrations.mlflow.replay {path}"
        )
        return path

    def _warn_pending_messages(self) -> None:
        with self._cond:
            messages, self._messages = self._messages, []
        for message in messages:
            warnings.warn(message, UserWarning, stacklevel=3)


class RunContents:
    """What a run held before an outbox continued it, read once per kind (per key for metrics), and the notes
    its checks leave for the caller."""

    def __init__(self, continued: bool) -> None:
        self.continued = continued
        self._last_steps: dict[str, int | None] = {}
        self._images: set[tuple[str, int]] | None = None
        self._files: dict[str, set[str]] = {}
        self._notes: list[str] = []
        self.table_tag_full = False  # said once: every later table would repeat it

    def note(self, message: str) -> None:
        self._notes.append(message)

    def take_notes(self) -> list[str]:
        notes, self._notes = self._notes, []
        return notes

    def last_step(self, client: MlflowClient, run_id: str, key: str) -> int | None:
        if key not in self._last_steps:
            history = client.get_metric_history(run_id, key)
            self._last_steps[key] = max((point.step for point in history), default=None)
        return self._last_steps[key]

    def had_image(self, client: MlflowClient, run_id: str, key: str, step: int) -> bool:
        if self._images is None:
            self._images = logged_image_steps(client, run_id)
        return (mlflow_key(key), step) in self._images

    def had_file(self, client: MlflowClient, run_id: str, path: str) -> bool:
        directory = path.rpartition("/")[0]
        if directory not in self._files:
            self._files[directory] = _artifact_files(client, run_id, directory)
        return path in self._files[directory]


# ---- the writes ------------------------------------------------------------------------------------------


class Write:
    """One thing to send. ``send`` may run again after a failure; ``uncertain`` is then True (or the write came
    from a spool), and ``send`` checks what the run already has before sending it again."""

    what = ""
    uncertain = False
    held_back = False

    def send(self, client: MlflowClient, run_id: str, run: RunContents) -> None:
        raise NotImplementedError

    def record(self) -> list[dict[str, Any]] | None:
        """The spool lines that make this write again (see :func:`read_spool`); None if it cannot be spooled."""
        raise NotImplementedError


class OpenRun(Write):
    """Nothing to send: it makes the worker open the run."""

    def send(self, client: MlflowClient, run_id: str, run: RunContents) -> None:
        pass

    def record(self) -> list[dict[str, Any]]:
        return []


class SpoolDone(Write):
    """Deletes a spool file once every write read from it has been sent (they are all queued before this)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def send(self, client: MlflowClient, run_id: str, run: RunContents) -> None:
        self.path.unlink(missing_ok=True)

    def record(self) -> list[dict[str, Any]]:
        return []


class MetricPoints(Write):
    def __init__(self, points: list[Metric], what: str, *, uncertain: bool = False) -> None:
        self.points = points
        self.what = what
        self.uncertain = uncertain
        self.from_spool = uncertain

    def send(self, client: MlflowClient, run_id: str, run: RunContents) -> None:
        if run.continued and not self.from_spool:
            self.points = _drop_steps_the_run_had(client, run_id, run, self.points)
            self.from_spool = True  # checked once: what is left is new to the run
        if self.uncertain:
            self.points = _not_yet_logged(client, run_id, self.points)
        while self.points:
            batch = self.points[:MAX_METRICS_PER_BATCH]
            # Synchronous whatever MLFLOW_ENABLE_ASYNC_LOGGING says, so that a failure raises here.
            client.log_batch(run_id, metrics=batch, synchronous=True)
            del self.points[: len(batch)]

    def record(self) -> list[dict[str, Any]]:
        return [
            {"kind": "metric", "key": point.key, "value": point.value, "timestamp": point.timestamp, "step": point.step}
            for point in self.points
        ]


class ImageWrite(Write):
    def __init__(
        self,
        key: str,
        step: int,
        timestamp_ms: int,
        what: str,
        *,
        render: Callable[[], bytes] | None = None,
        png: bytes | None = None,
        from_spool: bool = False,
    ) -> None:
        self.key, self.step, self.timestamp_ms, self.what = key, step, timestamp_ms, what
        self._render, self._png = render, png
        self.from_spool = self.uncertain = from_spool

    def png(self) -> bytes:
        if self._png is None:
            self._png = self._render()
            self._render = None
        return self._png

    def send(self, client: MlflowClient, run_id: str, run: RunContents) -> None:
        png = self.png()  # a table that cannot be drawn fails here, before any request
        if run.continued and not self.from_spool and run.had_image(client, run_id, self.key, self.step):
            return  # the diagram of a re-run epoch: the run keeps the first
        if self.uncertain:
            path = image_artifact_path(self.key, self.step, self.timestamp_ms)
            if path in _artifact_files(client, run_id, "images"):
                return
        upload_image(client, run_id, png, key=self.key, step=self.step, timestamp_ms=self.timestamp_ms)

    def record(self) -> list[dict[str, Any]]:
        png = base64.b64encode(self.png()).decode("ascii")
        return [
            {
                "kind": "image",
                "key": self.key,
                "step": self.step,
                "timestamp": self.timestamp_ms,
                "what": self.what,
                "png": png,
            }
        ]


class JsonWrite(Write):
    """A JSON file in a spool written before reliability tables were logged as MLflow tables (kind ``"json"``),
    sent as it was spooled."""

    uncertain = True

    def __init__(self, path: str, content: dict[str, Any], what: str) -> None:
        self.path, self.content, self.what = path, content, what

    def send(self, client: MlflowClient, run_id: str, run: RunContents) -> None:
        client.log_dict(run_id, self.content, self.path)  # same path: sending it again replaces it

    def record(self) -> list[dict[str, Any]]:
        return [{"kind": "json", "path": self.path, "content": self.content, "what": self.what}]


class TablesWrite(Write):
    def __init__(self, tables: dict[str, TableContent], what: str, *, from_spool: bool = False) -> None:
        self.tables, self.what = tables, what
        self.from_spool = self.uncertain = from_spool

    def send(self, client: MlflowClient, run_id: str, run: RunContents) -> None:
        for path, content in self.tables.items():
            if run.continued and not self.from_spool and run.had_file(client, run_id, path):
                continue  # the table of a re-run epoch: the run keeps the first, which matches its diagram
            upload_table(client, run_id, path, content)  # same path: sending it again replaces it
        left_out = list_as_tables(client, run_id, self.tables)
        if left_out and not run.table_tag_full:
            run.table_tag_full = True
            run.note(table_tag_full_message(run_id, left_out[0]))

    def record(self) -> list[dict[str, Any]]:
        return [{"kind": "tables", "tables": self.tables, "what": self.what}]


class ParamsWrite(Write):
    def __init__(self, params: dict[str, str], what: str) -> None:
        self.params, self.what = params, what

    def send(self, client: MlflowClient, run_id: str, run: RunContents) -> None:
        _log_new_params(client, run_id, self.params, self.what, run)

    def record(self) -> list[dict[str, Any]]:
        return [{"kind": "params", "params": self.params, "what": self.what}]


class ConfigWrite(Write):
    what = "the config (params, config.yaml, overrides)"

    def __init__(self, params: dict[str, str], config_yaml: str, overrides: str, *, resume: bool) -> None:
        self.params, self.config_yaml, self.overrides, self.resume = params, config_yaml, overrides, resume
        self.file_name: str | None = None

    def send(self, client: MlflowClient, run_id: str, run: RunContents) -> None:
        if self.file_name is None:  # decided once, so a retry does not count its own first upload
            earlier = [item.path for item in client.list_artifacts(run_id) if item.path.startswith("config")]
            self.file_name = f"config_resume_{len(earlier)}.yaml" if self.resume else "config.yaml"
        note = "MLflow keeps the first values, and this run's config is in its own config_resume_<n>.yaml artifact"
        _log_new_params(client, run_id, self.params, f"the config ({note})", run)
        client.set_tag(run_id, "xent_train.overrides", self.overrides)
        client.log_text(run_id, self.config_yaml, self.file_name)

    def record(self) -> list[dict[str, Any]]:
        return [
            {
                "kind": "config",
                "params": self.params,
                "config_yaml": self.config_yaml,
                "overrides": self.overrides,
                "resume": self.resume,
                "file_name": self.file_name,
            }
        ]


class TerminateWrite(Write):
    def __init__(self, status: str, end_time_ms: int) -> None:
        self.status, self.end_time_ms = status, end_time_ms
        self.what = f"the run's end ({status})"

    def send(self, client: MlflowClient, run_id: str, run: RunContents) -> None:
        client.set_terminated(run_id, self.status, self.end_time_ms)

    def record(self) -> list[dict[str, Any]]:
        return [{"kind": "status", "status": self.status, "end_time": self.end_time_ms}]


class CallWrite(Write):
    def __init__(self, what: str, send: Callable[[MlflowClient, str], object]) -> None:
        self.what, self._send = what, send

    def send(self, client: MlflowClient, run_id: str, run: RunContents) -> None:
        self._send(client, run_id)

    def record(self) -> None:
        return None


# ---- reading a spool -------------------------------------------------------------------------------------


def read_spool(path: str | os.PathLike) -> tuple[dict[str, Any], list[Write]]:
    """The header and the writes of a spool file written by :meth:`Outbox.close`, in their order.

    Consecutive metric lines become one write. A file of bare metric lines (``{"key", "value", "timestamp",
    "step"}``, as spools were before they had a header) reads as metrics with an empty header. Every write is
    marked as possibly sent already, so sending it checks the run first.

    Example:
        >>> import tempfile, json
        >>> with tempfile.TemporaryDirectory() as directory:
        ...     path = Path(directory) / "spool.jsonl"
        ...     _ = path.write_text("\\n".join(json.dumps(line) for line in [
        ...         {"kind": "run", "format": 1, "tracking_uri": "sqlite:///m.db", "run_id": "abc"},
        ...         {"kind": "metric", "key": "val/ece", "value": 0.1, "timestamp": 1, "step": 0},
        ...         {"kind": "metric", "key": "val/ece", "value": 0.2, "timestamp": 2, "step": 1},
        ...         {"kind": "status", "status": "FINISHED", "end_time": 3}]))
        ...     header, writes = read_spool(path)
        >>> header["run_id"], [write.what for write in writes]
        ('abc', ['2 metric points from a spool', "the run's end (FINISHED)"])
    """
    header: dict[str, Any] = {}
    writes: list[Write] = []
    points: list[Metric] = []
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            kind = record.get("kind", "metric")
            if kind == "metric":
                points.append(
                    Metric(record["key"], float(record["value"]), int(record["timestamp"]), int(record["step"]))
                )
                continue
            if points:
                writes.append(MetricPoints(points, f"{len(points)} metric points from a spool", uncertain=True))
                points = []
            if kind == "run":
                header = record
            else:
                writes.append(_write_from_record(kind, record))
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(
                f"{path}, line {number}: not a spool record ({type(error).__name__}: {error}): {line[:200]}"
            ) from error
    if points:
        writes.append(MetricPoints(points, f"{len(points)} metric points from a spool", uncertain=True))
    return header, writes


def _write_from_record(kind: str, record: dict[str, Any]) -> Write:
    if kind == "image":
        png = base64.b64decode(record["png"])
        return ImageWrite(
            record["key"], int(record["step"]), int(record["timestamp"]), record["what"], png=png, from_spool=True
        )
    if kind == "json":
        return JsonWrite(record["path"], record["content"], record["what"])
    if kind == "tables":
        return TablesWrite(record["tables"], record["what"], from_spool=True)
    if kind == "params":
        return ParamsWrite(record["params"], record["what"])
    if kind == "config":
        write = ConfigWrite(record["params"], record["config_yaml"], record["overrides"], resume=record["resume"])
        write.file_name = record["file_name"]
        return write
    if kind == "status":
        return TerminateWrite(record["status"], int(record["end_time"]))
    raise ValueError(f"unknown kind {kind!r}")


# ---- helpers ---------------------------------------------------------------------------------------------


def _refused(error: Exception) -> bool:
    if isinstance(error, MlflowException):
        return error.error_code in _REFUSED
    # Raised before any request (a table that cannot be drawn): sending it again cannot help.
    return isinstance(error, (ValueError, TypeError, KeyError))


def _artifact_files(client: MlflowClient, run_id: str, directory: str) -> set[str]:
    return {item.path for item in client.list_artifacts(run_id, directory or None) if not item.is_dir}


def _not_yet_logged(client: MlflowClient, run_id: str, points: list[Metric]) -> list[Metric]:
    logged: set[tuple[str, int, int]] = set()
    for key in dict.fromkeys(point.key for point in points):
        logged.update((key, point.step, point.timestamp) for point in client.get_metric_history(run_id, key))
    return [point for point in points if (point.key, point.step, point.timestamp) not in logged]


def _drop_steps_the_run_had(client: MlflowClient, run_id: str, run: RunContents, points: list[Metric]) -> list[Metric]:
    kept, skipped = [], []
    for point in points:
        last_step = run.last_step(client, run_id, point.key)
        (skipped if last_step is not None and point.step <= last_step else kept).append(point)
    if skipped:
        keys = dict.fromkeys(point.key for point in skipped)
        steps = sorted({point.step for point in skipped})
        run.note(
            f"ResilientMLFlowLogger: not logging {len(skipped)} point{'s' * (len(skipped) > 1)} again "
            f"({_preview(keys)} at step {', '.join(map(str, steps))}): run {run_id} had them before this logger "
            "continued it, as after a resume from an earlier checkpoint; their first values are kept."
        )
    return kept


def _log_new_params(client: MlflowClient, run_id: str, params: dict[str, str], what: str, run: RunContents) -> None:
    logged = client.get_run(run_id).data.params
    changed = sorted(key for key, value in params.items() if key in logged and logged[key] != value)
    if changed:
        run.note(f"run {run_id} already has params {', '.join(changed)} with other values; not logged again: {what}.")
    new = [Param(key, value) for key, value in params.items() if key not in logged]
    for start in range(0, len(new), MAX_PARAMS_TAGS_PER_BATCH):
        client.log_batch(run_id, params=new[start : start + MAX_PARAMS_TAGS_PER_BATCH], synchronous=True)


def _preview(names: Iterable[str], limit: int = 4) -> str:
    names = list(names)
    return ", ".join(names[:limit]) + (f", ... {len(names) - limit} more" if len(names) > limit else "")


def _preview_writes(writes: list[Write]) -> str:
    return _preview([write.what for write in writes if write.what], limit=3)
