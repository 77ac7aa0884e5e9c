import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from mlflow.utils.validation import MAX_TAG_VAL_LENGTH
from PIL import Image

from xent_plugin.integrations.figures.reliability_diagram import SIZE
from xent_plugin.integrations.mlflow.artifacts import log_reliability_diagram, log_reliability_table, logged_image_steps

# MLflow 3 stores each stepped image twice, as
# images/<key with "/" as "~">+step+<step>+timestamp+<ms>+<uuid>.png and as ...+<uuid>+compressed.webp.
IMAGE_NAME = re.compile(r"images/(?P<key>[^+]+)\+step\+(?P<step>\d+)\+timestamp\+\d+\+[0-9a-f-]+(?P<kind>.*)")


def artifact_paths(client, run_id, path) -> list[str]:
    return [artifact.path for artifact in client.list_artifacts(run_id, path)]


def logged_images(client, run_id) -> list[dict[str, str]]:
    return [IMAGE_NAME.fullmatch(path).groupdict() for path in artifact_paths(client, run_id, "images")]


def test_diagram_is_logged_once_per_step_on_the_image_slider(client, run_id, table):
    for step in (0, 5, 10):
        log_reliability_diagram(client, run_id, table, key="val/reliability", step=step, ece=0.1)
    images = logged_images(client, run_id)
    full_size = [image for image in images if image["kind"] == ".png"]
    thumbnails = [image for image in images if image["kind"] == "+compressed.webp"]
    assert sorted(int(image["step"]) for image in full_size) == [0, 5, 10]
    assert sorted(int(image["step"]) for image in thumbnails) == [0, 5, 10]
    assert {image["key"] for image in images} == {"val~reliability"}
    assert client.get_run(run_id).data.tags["mlflow.loggedImages"] == "True"


def test_key_characters_mlflow_rejects_are_replaced(client, run_id, table):
    log_reliability_diagram(client, run_id, table, key="val/reliability[top_label]", step=1)
    assert {image["key"] for image in logged_images(client, run_id)} == {"val~reliability_top_label_"}


def test_logged_image_is_the_rendered_diagram(client, run_id, table, tmp_path):
    log_reliability_diagram(client, run_id, table, key="reliability", step=3)
    (path,) = [path for path in artifact_paths(client, run_id, "images") if path.endswith(".png")]
    image = np.asarray(Image.open(client.download_artifacts(run_id, path, str(tmp_path))))
    assert image.shape[:2] == (SIZE, SIZE)


def read_table(client, run_id, path, tmp_path) -> dict:
    """The file at ``path``, checked to be a split-orient table without NaN."""
    text = Path(client.download_artifacts(run_id, path, str(tmp_path))).read_text()
    assert "NaN" not in text
    content = json.loads(text)
    assert list(content) == ["columns", "data"]
    assert all(len(row) == len(content["columns"]) for row in content["data"])
    return content


def columns_of(content: dict) -> dict[str, list]:
    return {name: [row[index] for row in content["data"]] for index, name in enumerate(content["columns"])}


def listed_tables(client, run_id) -> list[str]:
    entries = json.loads(client.get_run(run_id).data.tags.get("mlflow.loggedArtifacts", "[]"))
    assert all(entry["type"] == "table" for entry in entries)
    return [entry["path"] for entry in entries]


def with_none_for_nan(column) -> list:
    return [None if math.isnan(x) else x for x in column]


def test_table_has_one_row_per_bin_with_nan_as_null(client, run_id, table, tmp_path):
    log_reliability_table(client, run_id, table, key="val/reliability", step=42)
    content = read_table(client, run_id, "reliability/val/reliability/step_000042.json", tmp_path)
    assert content["columns"] == ["lower", "upper", "count", "confidence", "accuracy"]
    assert content["data"][:2] == [[0.0, 0.2, 0.0, None, None], [0.2, 0.4, 2.0, 0.325, 0.5]]
    assert columns_of(content) == {name: with_none_for_nan(column) for name, column in table.items()}


def test_table_is_listed_as_an_mlflow_table_and_reads_back_as_log_table_would(
    client, run_id, table, global_tracking_uri
):
    log_reliability_table(client, run_id, table, key="val/reliability", step=42)
    path = "reliability/val/reliability/step_000042.json"
    assert listed_tables(client, run_id) == [path]
    frame = client.load_table(client.get_run(run_id).info.experiment_id, path, run_ids=[run_id])
    assert list(frame.columns) == ["lower", "upper", "count", "confidence", "accuracy"]
    assert frame["count"].tolist() == table["count"]
    assert frame["accuracy"].isna().tolist() == [True, False, True, False, False]


def test_logging_a_step_again_replaces_its_table_and_lists_it_once(client, run_id, table, tmp_path):
    log_reliability_table(client, run_id, table, key="val", step=1)
    log_reliability_table(client, run_id, {**table, "accuracy": [0.0] * 5}, key="val", step=1)
    assert columns_of(read_table(client, run_id, "reliability/val/step_000001.json", tmp_path))["accuracy"] == [0.0] * 5
    assert listed_tables(client, run_id) == ["reliability/val/step_000001.json"]


def test_tables_logged_with_log_table_stay_listed(client, run_id, table):
    client.log_table(run_id, {"question": ["why?"]}, "eval.json")
    log_reliability_table(client, run_id, table, key="val", step=1)
    assert listed_tables(client, run_id) == ["eval.json", "reliability/val/step_000001.json"]


def test_tables_of_each_step_are_kept_side_by_side(client, run_id, table):
    for step in (1, 2):
        log_reliability_table(client, run_id, table, key="test", step=step)
    paths = ["reliability/test/step_000001.json", "reliability/test/step_000002.json"]
    assert artifact_paths(client, run_id, "reliability/test") == paths
    assert listed_tables(client, run_id) == paths


def test_table_carries_the_interval_columns_when_present(client, run_id, interval_table, tmp_path):
    log_reliability_table(client, run_id, interval_table, key="val", step=1)
    content = read_table(client, run_id, "reliability/val/step_000001.json", tmp_path)
    assert content["columns"] == list(interval_table)
    assert columns_of(content)["accuracy_lower"] == [None, 0.1, None, 0.6, 0.55]
    assert columns_of(content)["confidence_upper"] == [None, 0.35, None, 0.75, 0.95]


def test_smooth_curve_is_a_table_of_its_own_beside_the_bins(client, run_id, table, smooth_curve, tmp_path):
    log_reliability_table(client, run_id, table, key="val", step=2, smooth_curve=smooth_curve)
    paths = ["reliability/val/step_000002.json", "reliability/val/step_000002_smooth_curve.json"]
    assert artifact_paths(client, run_id, "reliability/val") == paths
    assert listed_tables(client, run_id) == paths

    content = read_table(client, run_id, paths[1], tmp_path)
    curve = columns_of(content)
    assert content["columns"] == ["confidence", "accuracy", "lower", "upper", "density", "smooth_ece", "bandwidth"]
    assert curve["confidence"] == smooth_curve["confidence"]
    assert curve["accuracy"][:3] == [None, None, 0.15]
    assert curve["upper"][2:] == smooth_curve["upper"][2:]
    assert set(curve["smooth_ece"]) == {0.0456} and set(curve["bandwidth"]) == {0.07}
    assert len(content["data"]) == 11


def test_no_smooth_curve_table_without_a_curve(client, run_id, table):
    log_reliability_table(client, run_id, table, key="val", step=3)
    assert artifact_paths(client, run_id, "reliability/val") == ["reliability/val/step_000003.json"]


def test_tables_that_would_overflow_the_tag_are_written_and_named_in_one_warning(client, run_id, table):
    # Fill the tag to within one entry of MLflow's limit with tables logged the way log_table lists them.
    filler = [{"path": f"eval_{index:04d}.json", "type": "table"} for index in range(400)]
    while len(json.dumps(filler, separators=(",", ":"))) > MAX_TAG_VAL_LENGTH - 30:
        filler.pop()
    client.set_tag(run_id, "mlflow.loggedArtifacts", json.dumps(filler, separators=(",", ":")))
    with pytest.warns(UserWarning, match=r"reliability/val/step_000001\.json and later tables .* JSON text"):
        log_reliability_table(client, run_id, table, key="val", step=1)
    assert artifact_paths(client, run_id, "reliability/val") == ["reliability/val/step_000001.json"]
    assert listed_tables(client, run_id) == [entry["path"] for entry in filler]
    assert len(client.get_run(run_id).data.tags["mlflow.loggedArtifacts"]) <= MAX_TAG_VAL_LENGTH


def test_diagram_with_every_option_is_logged(client, run_id, interval_table, smooth_curve):
    log_reliability_diagram(
        client,
        run_id,
        interval_table,
        key="val/reliability",
        step=4,
        ece=0.1,
        smooth_curve=smooth_curve,
        binning="equal_mass",
    )
    assert [int(image["step"]) for image in logged_images(client, run_id) if image["kind"] == ".png"] == [4]


def test_logged_image_steps_lists_each_key_and_step_once(client, run_id, table):
    for key, step in [("val/reliability", 0), ("val/reliability", 4), ("test/reliability[top_label]", 4)]:
        log_reliability_diagram(client, run_id, table, key=key, step=step)
    client.log_dict(run_id, {"not": "an image"}, "images/notes.json")

    assert logged_image_steps(client, run_id) == {
        ("val/reliability", 0),
        ("val/reliability", 4),
        ("test/reliability_top_label_", 4),
    }


def test_logged_image_steps_of_a_run_without_images_is_empty(client, run_id):
    assert logged_image_steps(client, run_id) == set()
