"""Logs many scalars at one step to an MLflow run in as few requests as MLflow allows."""

from __future__ import annotations

import time
from collections.abc import Mapping

from mlflow.entities import Metric
from mlflow.tracking import MlflowClient
from mlflow.utils.validation import MAX_METRICS_PER_BATCH


def log_metrics_batched(
    client: MlflowClient,
    run_id: str,
    metrics: Mapping[str, float],
    step: int,
    *,
    max_per_batch: int = MAX_METRICS_PER_BATCH,
) -> None:
    """Logs ``metrics`` at ``step`` with one ``log_batch`` call per ``max_per_batch`` metrics.

    MLflow rejects a batch of more than ``MAX_METRICS_PER_BATCH`` (1000) metrics, so a larger dictionary (a
    per-class breakdown, say) is split. All metrics share one timestamp.

    Example:
        >>> from unittest.mock import Mock
        >>> client = Mock(spec=MlflowClient)
        >>> log_metrics_batched(client, "run-id", {f"class_{i}/ece": 0.1 for i in range(2500)}, step=3)
        >>> [len(call.kwargs["metrics"]) for call in client.log_batch.call_args_list]
        [1000, 1000, 500]
    """
    is_integer = isinstance(max_per_batch, int) and not isinstance(max_per_batch, bool)
    if not is_integer or not 1 <= max_per_batch <= MAX_METRICS_PER_BATCH:
        expected = f"an integer in [1, {MAX_METRICS_PER_BATCH}]"
        raise ValueError(f"`max_per_batch` must be {expected}, got {max_per_batch!r}.")
    timestamp_ms = int(time.time() * 1000)
    entities = [Metric(key, float(value), timestamp_ms, step) for key, value in metrics.items()]
    for start in range(0, len(entities), max_per_batch):
        # Synchronous whatever MLFLOW_ENABLE_ASYNC_LOGGING says, so that a failure raises to the caller.
        client.log_batch(run_id, metrics=entities[start : start + max_per_batch], synchronous=True)
