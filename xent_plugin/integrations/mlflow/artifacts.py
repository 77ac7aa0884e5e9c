"""Logs a reliability table to an MLflow run: as a diagram on the run's image step slider, and as MLflow tables.

A diagram is stored as ``MlflowClient.log_image(key=..., step=...)`` stores a stepped image in MLflow 3, so the
UI shows it behind a step slider: ``images/<key>+step+<step>+timestamp+<ms>+<uuid>.png``, a
``...+compressed.webp`` thumbnail, every ``/`` in the key replaced by ``~``, and the run tagged
``mlflow.loggedImages``. Unlike ``log_image``, the uuid is derived from key, step and timestamp instead of drawn
at random, so uploading the same image again overwrites it instead of adding a second one.

The numbers behind a diagram are stored as ``mlflow.log_table`` stores a table, so the UI's artifact browser
shows them as a table (sortable, "View as table") and ``mlflow.load_table`` reads them back as a DataFrame: a
JSON file in pandas' split orientation, ``{"columns": [...], "data": [[...], ...]}`` with NaN (an empty bin) as
null, and an entry ``{"path": ..., "type": "table"}`` in the run's ``mlflow.loggedArtifacts`` tag. pandas is not
needed to write them. One step of ``key`` gives up to two tables, side by side in the artifact browser:

- ``reliability/<key>/step_<step:06d>.json``, one row per bin: ``lower``, ``upper``, ``count``, ``confidence``,
  ``accuracy``, and ``accuracy_lower``, ``accuracy_upper``, ``confidence_lower``, ``confidence_upper`` when the
  table has per-bin intervals (the bootstrap's);
- ``reliability/<key>/step_<step:06d>_smooth_curve.json``, when the diagram has a smoothed curve (XentMonitor's
  ``calibration_estimators``): one row per grid point, ``confidence``, ``accuracy``, ``lower``, ``upper`` and
  ``density``, with the curve's ``smooth_ece`` and ``bandwidth`` repeated on every row, so the file read alone,
  or several runs' files read together, still says which curve it is. The curve has its own file because its
  rows are grid points, not bins: one file of both would need a row kind and columns empty in half of the rows.

The step in the file name is the step of the epoch's scalars and diagram. Unlike ``log_table``, logging a step's
table again replaces the file instead of appending rows, so a retry or a replay leaves it as it was; the tag lists
each file once. A tag holds at most :data:`~mlflow.utils.validation.MAX_TAG_VAL_LENGTH` characters, roughly 100
table names; later tables are still written, with a warning, but the UI shows them as JSON text. Keys pass
through :func:`mlflow_key` first.
"""

from __future__ import annotations

import io
import json
import math
import re
import tempfile
import time
import uuid
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from mlflow.tracking import MlflowClient
from mlflow.tracking.multimedia import compress_image_size
from mlflow.utils.mlflow_tags import MLFLOW_LOGGED_ARTIFACTS, MLFLOW_LOGGED_IMAGES
from mlflow.utils.validation import MAX_TAG_VAL_LENGTH
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

# A table as mlflow.log_table stores it: {"columns": [names], "data": [rows]}.
TableContent = dict[str, list[Any]]


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
    """Queues one step's reliability diagram and tables of ``key`` on ``outbox``, as
    :func:`log_reliability_diagram` and :func:`log_reliability_table` would log them. The columns are copied
    now, so the caller may reuse its tensors; the diagram is drawn on the outbox's worker thread.

    Example:
        >>> from unittest.mock import Mock
        >>> outbox = Mock()
        >>> table = {"lower": [0.0], "upper": [1.0], "count": [3.0], "confidence": [0.8], "accuracy": [0.6]}
        >>> queue_reliability_figures(outbox, table, key="val/reliability", step=7, ece=0.2)
        >>> list(outbox.log_tables.call_args.args[0]), outbox.log_image.call_args.kwargs["what"]
        (['reliability/val/reliability/step_000007.json'], "reliability diagram 'val/reliability' at step 7")
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
    outbox.log_tables(
        reliability_tables(columns, key=key, step=step, smooth_curve=curve),
        what=f"reliability table {key!r} at step {step}",
    )


def reliability_table_path(key: str, step: int) -> str:
    """The artifact path of the per-bin table of ``key`` at ``step``.

    Example:
        >>> reliability_table_path("val/reliability", 7)
        'reliability/val/reliability/step_000007.json'
    """
    return f"reliability/{mlflow_key(key)}/step_{step:06d}.json"


def smooth_curve_table_path(key: str, step: int) -> str:
    """The artifact path of the smoothed curve of ``key`` at ``step``, listed right after the step's per-bin table.

    Example:
        >>> smooth_curve_table_path("val/reliability", 7)
        'reliability/val/reliability/step_000007_smooth_curve.json'
    """
    return f"reliability/{mlflow_key(key)}/step_{step:06d}_smooth_curve.json"


def reliability_tables(
    table: ReliabilityTable, *, key: str, step: int, smooth_curve: SmoothCurve | None = None
) -> dict[str, TableContent]:
    """The table files of ``key`` at ``step``, by artifact path: the per-bin table, one row per bin (columns
    ``lower``, ``upper``, ``count``, ``confidence``, ``accuracy``, then the interval columns ``table`` has), and,
    when ``smooth_curve`` is given, the curve, one row per grid point (``confidence``, ``accuracy``, ``lower``,
    ``upper``, then ``density``, ``smooth_ece`` and ``bandwidth`` where given, the last two the same on every row).

    Example:
        >>> table = {"lower": [0.0, 0.5], "upper": [0.5, 1.0], "count": [0.0, 2.0],
        ...          "confidence": [float("nan"), 0.8], "accuracy": [float("nan"), 1.0]}
        >>> reliability_tables(table, key="val", step=2)
        {'reliability/val/step_000002.json': {'columns': ['lower', 'upper', 'count', 'confidence', 'accuracy'], \
'data': [[0.0, 0.5, 0.0, None, None], [0.5, 1.0, 2.0, 0.8, 1.0]]}}
    """
    tables = {reliability_table_path(key, step): table_content(reliability_columns(table))}
    if smooth_curve is not None:
        tables[smooth_curve_table_path(key, step)] = table_content(smooth_curve_columns(smooth_curve))
    return tables


def table_content(columns: Mapping[str, np.ndarray | float]) -> TableContent:
    """``columns`` as pandas' ``to_json(orient="split", index=False)`` writes a frame, the form
    ``mlflow.log_table`` stores: ``{"columns": [names], "data": [rows]}``, NaN as null, a number given for a
    column repeated on every row.

    Example:
        >>> table_content({"confidence": np.array([0.2, 0.7]), "accuracy": np.array([np.nan, 1.0]),
        ...                "bandwidth": 0.05})
        {'columns': ['confidence', 'accuracy', 'bandwidth'], 'data': [[0.2, None, 0.05], [0.7, 1.0, 0.05]]}
    """
    (rows,) = {len(column) for column in columns.values() if isinstance(column, np.ndarray)}
    lists = [
        _json_value(column) if isinstance(column, np.ndarray) else [_json_value(column)] * rows
        for column in columns.values()
    ]
    return {"columns": list(columns), "data": [list(row) for row in zip(*lists, strict=True)]}


def log_reliability_table(
    client: MlflowClient,
    run_id: str,
    table: ReliabilityTable,
    *,
    key: str,
    step: int,
    smooth_curve: SmoothCurve | None = None,
) -> None:
    """Logs :func:`reliability_tables` as ``mlflow.log_table`` logs a table, so the MLflow UI shows each as a
    table: the per-bin table to ``reliability/<key>/step_<step:06d>.json`` and the smoothed curve, when given,
    to ``..._smooth_curve.json`` beside it. Logging a step again replaces its files; the run's
    ``mlflow.loggedArtifacts`` tag lists each file once.

    Example:
        >>> from unittest.mock import Mock
        >>> from mlflow.entities import Run, RunData, RunInfo
        >>> client = Mock(spec=MlflowClient)
        >>> client.get_run.return_value = Run(RunInfo("run-id", "0", "", "", 0, None, "FINISHED"), RunData())
        >>> table = {"lower": [0.0], "upper": [1.0], "count": [2.0], "confidence": [0.8], "accuracy": [1.0]}
        >>> log_reliability_table(client, "run-id", table, key="val/reliability", step=7)
        >>> client.log_text.call_args.args
        ('run-id', '{"columns": ["lower", "upper", "count", "confidence", "accuracy"], "data": [[0.0, 1.0, 2.0, 0.8, \
1.0]]}', 'reliability/val/reliability/step_000007.json')
        >>> client.set_tag.call_args.args[1:]
        ('mlflow.loggedArtifacts', '[{"path":"reliability/val/reliability/step_000007.json","type":"table"}]')
    """
    tables = reliability_tables(table, key=key, step=step, smooth_curve=smooth_curve)
    for path, content in tables.items():
        upload_table(client, run_id, path, content)
    left_out = list_as_tables(client, run_id, tables)
    if left_out:
        warnings.warn(table_tag_full_message(run_id, left_out[0]), UserWarning, stacklevel=2)


def upload_table(client: MlflowClient, run_id: str, path: str, content: TableContent) -> None:
    """Stores ``content`` (see :func:`table_content`) at ``path`` as the JSON file ``mlflow.log_table`` writes;
    :func:`list_as_tables` then tells the UI that it is a table. Uploading it again replaces it, where
    ``log_table`` would append the rows to the file.

    Example:
        >>> from unittest.mock import Mock
        >>> client = Mock(spec=MlflowClient)
        >>> upload_table(client, "run-id", "t.json", {"columns": ["count"], "data": [[2.0]]})
        >>> client.log_text.call_args.args
        ('run-id', '{"columns": ["count"], "data": [[2.0]]}', 't.json')
    """
    # allow_nan=False: a NaN that slipped through would make a file that JSON.parse, in the UI, rejects.
    client.log_text(run_id, json.dumps(content, allow_nan=False), path)


def list_as_tables(client: MlflowClient, run_id: str, paths: Iterable[str]) -> list[str]:
    """Adds each of ``paths`` to the run's ``mlflow.loggedArtifacts`` tag as ``{"path": ..., "type": "table"}``,
    as ``log_table`` does, keeping what the tag lists already and listing no path twice. The tag is written
    only if it changes. Returns the paths that were left out because the tag would grow past MLflow's limit on a
    tag's length (:data:`~mlflow.utils.validation.MAX_TAG_VAL_LENGTH`): a longer value would be truncated into
    JSON that neither the UI nor ``load_table`` can read.

    Example:
        >>> from unittest.mock import Mock
        >>> from mlflow.entities import Run, RunData, RunInfo, RunTag
        >>> client = Mock(spec=MlflowClient)
        >>> tag = RunTag("mlflow.loggedArtifacts", '[{"path": "eval.json", "type": "table"}]')
        >>> client.get_run.return_value = Run(RunInfo("run-id", "0", "", "", 0, None, "RUNNING"), RunData(tags=[tag]))
        >>> list_as_tables(client, "run-id", ["eval.json", "t.json"])
        []
        >>> client.set_tag.call_args.args[2]
        '[{"path":"eval.json","type":"table"},{"path":"t.json","type":"table"}]'
    """
    listed = json.loads(client.get_run(run_id).data.tags.get(MLFLOW_LOGGED_ARTIFACTS, "[]"))
    if not isinstance(listed, list):
        raise ValueError(f"run {run_id}'s tag {MLFLOW_LOGGED_ARTIFACTS} must hold a JSON list, got {listed!r:.200}.")
    added, left_out = False, []
    for path in paths:
        entry = {"path": path, "type": "table"}  # in this order: load_table's LIKE filter expects it
        if entry in listed:
            continue
        if len(_tag_value([*listed, entry])) > MAX_TAG_VAL_LENGTH:
            left_out.append(path)
            continue
        listed.append(entry)
        added = True
    if added:
        client.set_tag(run_id, MLFLOW_LOGGED_ARTIFACTS, _tag_value(listed), synchronous=True)
    return left_out


def table_tag_full_message(run_id: str, path: str) -> str:
    """The warning for a table that :func:`list_as_tables` had to leave out."""
    return (
        f"run {run_id}: the tag {MLFLOW_LOGGED_ARTIFACTS} that lists the run's tables is full (MLflow keeps at most "
        f"{MAX_TAG_VAL_LENGTH} characters in a tag), so {path} and later tables are logged as files that the MLflow "
        "UI shows as JSON text, not as tables, and that mlflow.load_table does not find; log figures less often "
        "(figures_every_n_epochs) to keep them all in it."
    )


def _tag_value(entries: list[object]) -> str:
    # Compact: about 7% more tables fit in the tag. The UI parses it as JSON; load_table's filter allows any spacing.
    return json.dumps(entries, separators=(",", ":"))


def _json_value(value: np.ndarray | float) -> list[float | None] | float | None:
    # JSON has no NaN: Python's json writes a bare NaN that strict parsers, JavaScript's included, reject.
    if isinstance(value, np.ndarray):
        return [None if math.isnan(number) else number for number in value.tolist()]
    return None if math.isnan(value) else value
