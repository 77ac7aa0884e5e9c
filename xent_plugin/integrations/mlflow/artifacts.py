"""Logs a reliability table to an MLflow run: as a diagram on the run's image step slider, and as JSON.

A diagram is stored as ``MlflowClient.log_image(key=..., step=...)`` stores a stepped image in MLflow 3, so the
UI shows it behind a step slider: ``images/<key>+step+<step>+timestamp+<ms>+<uuid>.png``, a
``...+compressed.webp`` thumbnail, every ``/`` in the key replaced by ``~``, and the run tagged
``mlflow.loggedImages``. Unlike ``log_image``, the uuid is derived from key, step and timestamp instead of drawn
at random, so uploading the same image again overwrites it instead of adding a second one. The table, and the
smoothed curve when there is one, go to ``reliability/<key>/step_<step:06d>.json``. Keys pass through
:func:`mlflow_key` first.
"""

from __future__ import annotations

import io
import math
import re
import tempfile
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from mlflow.tracking import MlflowClient
from mlflow.tracking.multimedia import compress_image_size
from mlflow.utils.mlflow_tags import MLFLOW_LOGGED_IMAGES
from PIL import Image

from xent_plugin.integrations.figures.reliability_columns import (
    ReliabilityTable,
    SmoothCurve,
    reliability_columns,
    smooth_curve_columns,
)
from xent_plugin.integrations.figures.reliability_diagram import reliability_diagram

if TYPE_CHECKING:
    from xent_plugin.integrations.mlflow.outbox import Outbox

# The characters MlflowClient.log_image accepts in a key; it raises ValueError on any other.
_UNSUPPORTED_KEY_CHARACTERS = re.compile(r"[^a-zA-Z0-9_\-./ ]")
# The full-size image of a log_image(key=..., step=...) call, with "/" in the key stored as "~".
_IMAGE_PATH = re.compile(r"^images/(?P<key>.+)\+step\+(?P<step>\d+)\+timestamp\+.*\.png$")
_TABLE_NAME = re.compile(r"step_(?P<step>\d+)\.json$")
# Any fixed namespace: what matters is that one (key, step, timestamp) always gives the same file name.
_IMAGE_NAMESPACE = uuid.UUID("6f1c3f0e-8d5b-4c1e-9a53-7d0c2f9b8e41")


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
        >>> Path(client.log_artifact.call_args_list[0].args[1]).name.split("+")[:3]
        ['val~reliability', 'step', '7']
    """
    png = reliability_diagram_png(table, key=key, step=step, ece=ece, smooth_curve=smooth_curve, binning=binning)
    upload_image(client, run_id, png, key=key, step=step, timestamp_ms=int(time.time() * 1000))


def reliability_diagram_png(
    table: ReliabilityTable,
    *,
    key: str,
    step: int,
    ece: float | None = None,
    smooth_curve: SmoothCurve | None = None,
    binning: str = "equal_width",
) -> bytes:
    """The PNG of :func:`~xent_plugin.integrations.figures.reliability_diagram`, titled with ``key`` and ``step``.

    Example:
        >>> table = {"lower": [0.0], "upper": [1.0], "count": [3.0], "confidence": [0.8], "accuracy": [0.6]}
        >>> reliability_diagram_png(table, key="val/reliability", step=7)[:4]
        b'\\x89PNG'
    """
    image = reliability_diagram(table, ece=ece, title=f"{key}, step {step}", smooth_curve=smooth_curve, binning=binning)
    buffer = io.BytesIO()
    image.save(buffer, format="png")
    return buffer.getvalue()


def image_artifact_path(key: str, step: int, timestamp_ms: int) -> str:
    """Where :func:`upload_image` stores the full-size image of ``key`` at ``step``; the same arguments always
    give the same path.

    Example:
        >>> image_artifact_path("val/reliability", 3, 1700000000000)
        'images/val~reliability+step+3+timestamp+1700000000000+efc1918a-9d88-586e-a5bd-c75dba2348bc.png'
    """
    stem = f"{mlflow_key(key).replace('/', '~')}+step+{step}+timestamp+{timestamp_ms}"
    return f"images/{stem}+{uuid.uuid5(_IMAGE_NAMESPACE, stem)}.png"


def upload_image(client: MlflowClient, run_id: str, png: bytes, *, key: str, step: int, timestamp_ms: int) -> None:
    """Stores ``png`` as the image of ``key`` at ``step``, as ``log_image(key=..., step=...)`` would, under the
    name :func:`image_artifact_path` gives: uploading it again replaces the same two files.

    Example:
        >>> from unittest.mock import Mock
        >>> client = Mock(spec=MlflowClient)
        >>> png = reliability_diagram_png(
        ...     {"lower": [0.0], "upper": [1.0], "count": [3.0], "confidence": [0.8], "accuracy": [0.6]},
        ...     key="val", step=1)
        >>> upload_image(client, "run-id", png, key="val", step=1, timestamp_ms=1700000000000)
        >>> [Path(call.args[1]).suffix for call in client.log_artifact.call_args_list]
        ['.png', '.webp']
    """
    full_size = image_artifact_path(key, step, timestamp_ms)
    image = Image.open(io.BytesIO(png))
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / Path(full_size).name
        path.write_bytes(png)
        client.log_artifact(run_id, str(path), "images")
        thumbnail = path.with_name(f"{path.stem}+compressed.webp")
        compress_image_size(image).save(thumbnail)
        client.log_artifact(run_id, str(thumbnail), "images")
    client.set_tag(run_id, MLFLOW_LOGGED_IMAGES, True, synchronous=True)


def queue_reliability_figures(
    outbox: Outbox,
    table: ReliabilityTable,
    *,
    key: str,
    step: int,
    ece: float | None = None,
    smooth_curve: SmoothCurve | None = None,
    binning: str = "equal_width",
) -> None:
    """Queues one step's reliability diagram and JSON table of ``key`` on ``outbox``, as
    :func:`log_reliability_diagram` and :func:`log_reliability_table` would log them. The columns are copied
    now, so the caller may reuse its tensors; the diagram is drawn on the outbox's worker thread.

    Example:
        >>> from unittest.mock import Mock
        >>> outbox = Mock()
        >>> table = {"lower": [0.0], "upper": [1.0], "count": [3.0], "confidence": [0.8], "accuracy": [0.6]}
        >>> queue_reliability_figures(outbox, table, key="val/reliability", step=7, ece=0.2)
        >>> outbox.log_json.call_args.args[0], outbox.log_image.call_args.kwargs["what"]
        ('reliability/val/reliability/step_000007.json', "reliability diagram 'val/reliability' at step 7")
    """
    what = f"reliability diagram {key!r} at step {step}"
    try:
        columns = reliability_columns(table)
        curve = None if smooth_curve is None else smooth_curve_columns(smooth_curve)
    except ValueError as error:  # a figure is worth less than the training run that made it
        outbox.refuse(what, error)
        return

    def render() -> bytes:
        return reliability_diagram_png(columns, key=key, step=step, ece=ece, smooth_curve=curve, binning=binning)

    outbox.log_image(key, step, render, what=what)
    outbox.log_json(
        reliability_table_path(key, step),
        reliability_table_content(columns, key=key, step=step, smooth_curve=curve),
        what=f"reliability table {key!r} at step {step}",
    )


def reliability_table_path(key: str, step: int) -> str:
    """The artifact path of the JSON table of ``key`` at ``step``.

    Example:
        >>> reliability_table_path("val/reliability", 7)
        'reliability/val/reliability/step_000007.json'
    """
    return f"reliability/{mlflow_key(key)}/step_{step:06d}.json"


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
    content = reliability_table_content(table, key=key, step=step, smooth_curve=smooth_curve)
    client.log_dict(run_id, content, reliability_table_path(key, step))


def reliability_table_content(
    table: ReliabilityTable, *, key: str, step: int, smooth_curve: SmoothCurve | None = None
) -> dict[str, object]:
    """What :func:`log_reliability_table` writes: the table's columns as JSON lists, NaN as null.

    Example:
        >>> table = {"lower": [0.0], "upper": [1.0], "count": [0.0], "confidence": [float("nan")],
        ...          "accuracy": [float("nan")]}
        >>> reliability_table_content(table, key="val", step=2)["bins"]["accuracy"]
        [None]
    """
    bins = {name: _json_value(column) for name, column in reliability_columns(table).items()}
    content: dict[str, object] = {"key": key, "step": step, "bins": bins}
    if smooth_curve is not None:
        content["smooth_curve"] = {
            name: _json_value(value) for name, value in smooth_curve_columns(smooth_curve).items()
        }
    return content


def _json_value(value: np.ndarray | float) -> list[float | None] | float | None:
    # JSON has no NaN: Python's json writes a bare NaN that strict parsers, JavaScript's included, reject.
    if isinstance(value, np.ndarray):
        return [None if math.isnan(number) else number for number in value.tolist()]
    return None if math.isnan(value) else value
