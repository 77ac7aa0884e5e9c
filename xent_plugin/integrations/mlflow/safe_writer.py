"""Runs MLflow logging calls so that a failed upload costs a warning, never the training run."""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from functools import partial
from typing import Any, TypeVar

from mlflow.tracking import MlflowClient

from xent_plugin.integrations.figures.reliability_columns import (
    ReliabilityTable,
    SmoothCurve,
    reliability_columns,
    smooth_curve_columns,
)
from xent_plugin.integrations.mlflow.artifacts import (
    log_reliability_diagram,
    log_reliability_table,
    logged_image_steps,
    logged_table_steps,
    mlflow_key,
)
from xent_plugin.integrations.mlflow.metrics import log_metrics_batched

_Result = TypeVar("_Result")

# Failed uploads kept for a retry; a reliability diagram is a few hundred KB, so this bounds the memory.
MAX_KEPT = 200


class SafeMlflowWriter:
    """Logs to one MLflow run; each failure is warned about once, recorded in :attr:`failed`, and not raised.

    With ``background=True`` the uploads run in order on one worker thread, so training does not wait for the
    tracking server. The values to log are copied in the caller's thread first, so the caller may reuse its
    tensors at once. Failures on the worker are warned about from the caller's thread, at the next call,
    :meth:`flush` or :meth:`close`: a warning raised in a worker thread can be missed by warning filters and
    by ``pytest.warns``, which are per-process state read while the warning is raised. After :meth:`close`,
    calls run in the caller's thread.

    A diagram or table whose key and step the run already had before this writer first uploaded one of that
    kind (for tables, of that key) is not logged again: a run resumed from a checkpoint older than its last
    logged epoch keeps one image and one table per step, those of the first time the step was logged.

    Args:
        client: the client to log with.
        run_id: the run to log to.
        background: upload on a worker thread instead of in the caller's thread.

    Example:
        >>> from unittest.mock import Mock
        >>> client = Mock(spec=MlflowClient)
        >>> client.log_batch.side_effect = ConnectionError("tracking server is down")
        >>> writer = SafeMlflowWriter(client, "run-id")
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     writer.log_metrics({"val/ece": 0.1, "val/nll": 0.7}, step=3)
        >>> writer.failed
        ['2 metrics at step 3']
        >>> print(caught[0].message)
        MLflow logging failed, not logged: 2 metrics at step 3 (ConnectionError: tracking server is down); kept to retry
    """

    def __init__(self, client: MlflowClient, run_id: str, *, background: bool = False) -> None:
        self.client = client
        self.run_id = run_id
        self.failed: list[str] = []
        self._unreported: list[str] = []
        self._lock = threading.Lock()
        self._pending: list[Future[object]] = []
        self._executor = ThreadPoolExecutor(max_workers=1) if background else None
        self._kept: list[tuple[str, Callable[..., object], tuple, dict]] = []
        self._images_before: set[tuple[str, int]] | None = None
        self._tables_before: dict[str, set[int]] = {}

    def log_reliability_diagram(
        self,
        table: ReliabilityTable,
        *,
        key: str,
        step: int,
        ece: float | None = None,
        smooth_curve: SmoothCurve | None = None,
        binning: str = "equal_width",
    ) -> None:
        """:func:`~xent_plugin.integrations.mlflow.artifacts.log_reliability_diagram`, without raising."""
        what = f"reliability diagram {key!r} at step {step}"
        copies = partial(_reliability_copies, table, smooth_curve)
        self._copy_then_submit(
            what, copies, self._log_diagram_the_run_lacks, key=key, step=step, ece=ece, binning=binning
        )

    def log_reliability_table(
        self, table: ReliabilityTable, *, key: str, step: int, smooth_curve: SmoothCurve | None = None
    ) -> None:
        """:func:`~xent_plugin.integrations.mlflow.artifacts.log_reliability_table`, without raising."""
        what = f"reliability table {key!r} at step {step}"
        copies = partial(_reliability_copies, table, smooth_curve)
        self._copy_then_submit(what, copies, self._log_table_the_run_lacks, key=key, step=step)

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        """:func:`~xent_plugin.integrations.mlflow.metrics.log_metrics_batched`, without raising."""
        what = f"{len(metrics)} metrics at step {step}"
        self._copy_then_submit(
            what,
            lambda: {"metrics": {key: float(value) for key, value in metrics.items()}},
            log_metrics_batched,
            step=step,
        )

    def submit(self, what: str, log: Callable[..., object], *args: Any, **kwargs: Any) -> None:
        """Runs ``log(client, run_id, *args, **kwargs)``; ``what`` names what is lost if it fails.

        A failed upload is kept (up to :data:`MAX_KEPT`) and tried again, in order, before the next one, so a
        figure logged while the server was down arrives once it is back.
        """
        if self._executor is None:
            self._upload(what, log, args, kwargs)
        else:
            self._pending = [future for future in self._pending if not future.done()]
            self._pending.append(self._executor.submit(self._upload, what, log, args, kwargs))
        self._warn_unreported()

    def flush(self) -> None:
        """Waits for the uploads submitted so far, then warns about any that failed."""
        wait(self._pending)
        self._pending = []
        self._warn_unreported()

    def close(self) -> None:
        """Flushes, tries the kept uploads once more, warns about any still failing, and stops the worker."""
        self.flush()
        self._retry_kept()
        with self._lock:
            lost, self._kept = self._kept, []
        for what, *_ in lost:
            warnings.warn(f"MLflow logging failed for good, not logged: {what}", UserWarning, stacklevel=2)
        self._warn_unreported()
        if self._executor is not None:
            self._executor.shutdown()
            self._executor = None

    def _log_diagram_the_run_lacks(
        self, client: MlflowClient, run_id: str, *, key: str, step: int, **diagram: Any
    ) -> None:
        if self._images_before is None:
            self._images_before = logged_image_steps(client, run_id)
        if (mlflow_key(key), step) not in self._images_before:
            log_reliability_diagram(client, run_id, key=key, step=step, **diagram)

    def _log_table_the_run_lacks(self, client: MlflowClient, run_id: str, *, key: str, step: int, **table: Any) -> None:
        if key not in self._tables_before:
            self._tables_before[key] = logged_table_steps(client, run_id, key)
        if step not in self._tables_before[key]:
            log_reliability_table(client, run_id, key=key, step=step, **table)

    def _upload(self, what: str, log: Callable[..., object], args: tuple, kwargs: dict) -> None:
        if self._retry_kept():
            self._attempt_or_keep(what, log, args, kwargs)
            return
        # The server still fails on an earlier upload: keep this one too, without a second wait on it now.
        with self._lock:
            self.failed.append(what)
            self._unreported.append(
                f"MLflow logging failed, not logged: {what} (earlier uploads still fail); kept to retry"
            )
        self._keep(what, log, args, kwargs)

    def _retry_kept(self) -> bool:
        """Re-sends kept uploads in order; stops at the first that fails again. True when none is left."""
        while True:
            with self._lock:
                if not self._kept:
                    return True
                what, log, args, kwargs = self._kept[0]
            try:
                log(self.client, self.run_id, *args, **kwargs)
            except Exception:  # noqa: BLE001 - still unreachable; it stays kept
                return False
            with self._lock:
                self._kept.pop(0)

    def _attempt_or_keep(self, what: str, log: Callable[..., object], args: tuple, kwargs: dict) -> None:
        try:
            log(self.client, self.run_id, *args, **kwargs)
        except Exception as error:
            with self._lock:
                self.failed.append(what)
                self._unreported.append(
                    f"MLflow logging failed, not logged: {what} ({type(error).__name__}: {error}); kept to retry"
                )
            self._keep(what, log, args, kwargs)

    def _keep(self, what: str, log: Callable[..., object], args: tuple, kwargs: dict) -> None:
        with self._lock:
            if len(self._kept) < MAX_KEPT:
                self._kept.append((what, log, args, kwargs))
            else:
                self._unreported.append(f"MLflow logging failed, not kept ({MAX_KEPT} already wait): {what}")

    def _copy_then_submit(
        self, what: str, copy: Callable[[], dict[str, object]], log: Callable[..., object], **kwargs: Any
    ) -> None:
        """Submits ``log(client, run_id, **copy(), **kwargs)``, ``copy`` run in the caller's thread."""
        values = self._attempt(what, copy)
        if values is None:
            self._warn_unreported()
        else:
            self.submit(what, log, **values, **kwargs)

    def _attempt(
        self,
        what: str,
        action: Callable[..., _Result],
        *args: Any,
        **kwargs: Any,
    ) -> _Result | None:
        try:
            return action(*args, **kwargs)
        except Exception as error:
            with self._lock:
                self.failed.append(what)
                self._unreported.append(
                    f"MLflow logging failed, not logged: {what} ({type(error).__name__}: {error})",
                )
            return None

    def _warn_unreported(self) -> None:
        with self._lock:
            messages, self._unreported = self._unreported, []
        for message in messages:
            warnings.warn(message, UserWarning, stacklevel=3)


def _reliability_copies(table: ReliabilityTable, smooth_curve: SmoothCurve | None) -> dict[str, object]:
    return {
        "table": reliability_columns(table),
        "smooth_curve": None if smooth_curve is None else smooth_curve_columns(smooth_curve),
    }
