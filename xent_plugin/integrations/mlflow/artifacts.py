"""Logs a reliability table to an MLflow run: as a diagram on the run's image step slider, and as JSON.

The diagram goes through ``MlflowClient.log_image(key=..., step=...)``, which MLflow 3 stores as two artifacts
per call, ``images/<key>+step+<step>+timestamp+<ms>+<uuid>.png`` and a ``...+compressed.webp`` thumbnail, with
every ``/`` in the key replaced by ``~``. The table, and the smoothed curve when there is one, go to
``reliability/<key>/step_<step:06d>.json``. Keys pass through :func:`mlflow_key` first.
"""

from __future__ import annotations

import math
import re

import numpy as np
from mlflow.tracking import MlflowClient

from xent_plugin.integrations.figures.reliability_columns import (
    ReliabilityTable,
    SmoothCurve,
    reliability_columns,
    smooth_curve_columns,
)
from xent_plugin.integrations.figures.reliability_diagram import reliability_diagram

# The characters MlflowClient.log_image accepts in a key; it raises ValueError on any other.
_UNSUPPORTED_KEY_CHARACTERS = re.compile(r"[^a-zA-Z0-9_\-./ ]")
# The full-size image of a log_image(key=..., step=...) call, with "/" in the key stored as "~".
_IMAGE_PATH = re.compile(r"^images/(?P<key>.+)\+step\+(?P<step>\d+)\+timestamp\+.*\.png$")
_TABLE_NAME = re.compile(r"step_(?P<step>\d+)\.json$")


def mlflow_key(key: str) -> str:
    """``key`` with every character MLflow rejects in an image key replaced by ``_``.

    Example:
        >>> mlflow_key("val/reliability[top_label]")
        'val/reliability_top_label_'
    """
    return _UNSUPPORTED_KEY_CHARACTERS.sub("_", key)


def logged_image_steps(client: MlflowClient, run_id: str) -> set[tuple[str, int]]:
    """The ``(key, step)`` pairs of the images that ``log_image(key=..., step=...)`` has logged to the run.

    Example:
        >>> from unittest.mock import Mock
        >>> from mlflow.entities import FileInfo
        >>> client = Mock(spec=MlflowClient)
        >>> client.list_artifacts.return_value = [
        ...     FileInfo("images/val~reliability+step+3+timestamp+1700000000000+ab12.png", False, 10),
        ...     FileInfo("images/val~reliability+step+3+timestamp+1700000000000+ab12+compressed.webp", False, 2),
        ... ]
        >>> logged_image_steps(client, "run-id")
        {('val/reliability', 3)}
    """
    matches = (_IMAGE_PATH.match(item.path) for item in client.list_artifacts(run_id, "images"))
    return {(match["key"].replace("~", "/"), int(match["step"])) for match in matches if match}


def logged_table_steps(client: MlflowClient, run_id: str, key: str) -> set[int]:
    """The steps at which :func:`log_reliability_table` has logged a table of ``key`` to the run.

    Example:
        >>> from unittest.mock import Mock
        >>> from mlflow.entities import FileInfo
        >>> client = Mock(spec=MlflowClient)
        >>> client.list_artifacts.return_value = [FileInfo("reliability/val/reliability/step_000003.json", False, 9)]
        >>> logged_table_steps(client, "run-id", "val/reliability")
        {3}
        >>> client.list_artifacts.call_args.args
        ('run-id', 'reliability/val/reliability')
    """
    listed = client.list_artifacts(run_id, f"reliability/{mlflow_key(key)}")
    matches = (_TABLE_NAME.search(item.path) for item in listed if not item.is_dir)
    return {int(match["step"]) for match in matches if match}


def log_reliability_diagram(
    client: MlflowClient,
    run_id: str,
    table: ReliabilityTable,
    *,
    key: str,
    step: int,
    ece: float | None = None,
    smooth_curve: SmoothCurve | None = None,
    binning: str = "equal_width",
) -> None:
    """Draws :func:`~xent_plugin.integrations.figures.reliability_diagram` and logs it as the image of
    ``key`` at ``step``, so the MLflow UI shows one diagram per step behind a slider. ``ece``, ``smooth_curve``
    and ``binning`` are passed on to the diagram; per-bin intervals in ``table`` are drawn as whiskers.

    Example:
        >>> from unittest.mock import Mock
        >>> client = Mock(spec=MlflowClient)
        >>> table = {"lower": [0.0], "upper": [1.0], "count": [3.0], "confidence": [0.8], "accuracy": [0.6]}
        >>> log_reliability_diagram(client, "run-id", table, key="val/reliability", step=7, ece=0.2)
        >>> client.log_image.call_args.kwargs
        {'key': 'val/reliability', 'step': 7, 'synchronous': True}
    """
    image = reliability_diagram(table, ece=ece, title=f"{key}, step {step}", smooth_curve=smooth_curve, binning=binning)
    # Synchronous whatever MLFLOW_ENABLE_ASYNC_LOGGING says, so that an upload failure raises here, where the
    # caller can report it, instead of in MLflow's own queue.
    client.log_image(run_id, image, key=mlflow_key(key), step=step, synchronous=True)


def log_reliability_table(
    client: MlflowClient,
    run_id: str,
    table: ReliabilityTable,
    *,
    key: str,
    step: int,
    smooth_curve: SmoothCurve | None = None,
) -> None:
    """Logs the per-bin columns of ``table`` to ``reliability/<key>/step_<step:06d>.json``, NaN as null.

    The file holds ``{"key": ..., "step": ..., "bins": {"lower": [...], "upper": [...], "count": [...],
    "confidence": [...], "accuracy": [...]}}``, with ``"accuracy_lower"``, ``"accuracy_upper"``,
    ``"confidence_lower"`` and ``"confidence_upper"`` in ``"bins"`` when ``table`` has them, and a
    ``"smooth_curve"`` entry (``"confidence"``, ``"accuracy"``, ``"lower"``, ``"upper"`` lists, and
    ``"density"``, ``"smooth_ece"``, ``"bandwidth"`` where given) when ``smooth_curve`` is.

    Example:
        >>> from unittest.mock import Mock
        >>> client = Mock(spec=MlflowClient)
        >>> table = {"lower": [0.0, 0.5], "upper": [0.5, 1.0], "count": [0.0, 2.0],
        ...          "confidence": [float("nan"), 0.8], "accuracy": [float("nan"), 1.0]}
        >>> log_reliability_table(client, "run-id", table, key="val/reliability", step=7)
        >>> run_id, content, path = client.log_dict.call_args.args
        >>> path, content["bins"]["accuracy"]
        ('reliability/val/reliability/step_000007.json', [None, 1.0])
    """
    bins = {name: _json_value(column) for name, column in reliability_columns(table).items()}
    content = {"key": key, "step": step, "bins": bins}
    if smooth_curve is not None:
        content["smooth_curve"] = {
            name: _json_value(value) for name, value in smooth_curve_columns(smooth_curve).items()
        }
    client.log_dict(run_id, content, f"reliability/{mlflow_key(key)}/step_{step:06d}.json")


def _json_value(value: np.ndarray | float) -> list[float | None] | float | None:
    # JSON has no NaN: Python's json writes a bare NaN that strict parsers, JavaScript's included, reject.
    if isinstance(value, np.ndarray):
        return [None if math.isnan(number) else number for number in value.tolist()]
    return None if math.isnan(value) else value
