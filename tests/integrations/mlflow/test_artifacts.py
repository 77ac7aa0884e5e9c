import json
import math
import re
from pathlib import Path

import numpy as np
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


def test_table_round_trips_as_json_with_nan_as_null(client, run_id, table, tmp_path):
    log_reliability_table(client, run_id, table, key="val/reliability", step=42)
    path = client.download_artifacts(run_id, "reliability/val/reliability/step_000042.json", str(tmp_path))
    text = Path(path).read_text()
    assert "NaN" not in text
    bins = {name: [None if math.isnan(x) else x for x in column] for name, column in table.items()}
    assert json.loads(text) == {"key": "val/reliability", "step": 42, "bins": bins}


def test_tables_of_each_step_are_kept_side_by_side(client, run_id, table):
    for step in (1, 2):
        log_reliability_table(client, run_id, table, key="test", step=step)
    assert artifact_paths(client, run_id, "reliability/test") == [
        "reliability/test/step_000001.json",
        "reliability/test/step_000002.json",
    ]


def read_table(client, run_id, path, tmp_path) -> dict:
    text = Path(client.download_artifacts(run_id, path, str(tmp_path))).read_text()
    assert "NaN" not in text
    return json.loads(text)


def test_table_json_carries_the_interval_columns_when_present(client, run_id, interval_table, tmp_path):
    log_reliability_table(client, run_id, interval_table, key="val", step=1)
    bins = read_table(client, run_id, "reliability/val/step_000001.json", tmp_path)["bins"]
    assert list(bins) == list(interval_table)
    assert bins["accuracy_lower"] == [None, 0.1, None, 0.6, 0.55]
    assert bins["confidence_upper"] == [None, 0.35, None, 0.75, 0.95]


def test_table_json_carries_the_smooth_curve_when_given(client, run_id, table, smooth_curve, tmp_path):
    log_reliability_table(client, run_id, table, key="val", step=2, smooth_curve=smooth_curve)
    content = read_table(client, run_id, "reliability/val/step_000002.json", tmp_path)
    curve = content["smooth_curve"]
    assert curve["confidence"] == smooth_curve["confidence"]
    assert curve["accuracy"][:3] == [None, None, 0.15]
    assert curve["upper"][2:] == smooth_curve["upper"][2:]
    assert (curve["smooth_ece"], curve["bandwidth"]) == (0.0456, 0.07)


def test_table_json_has_no_smooth_curve_without_one(client, run_id, table, tmp_path):
    log_reliability_table(client, run_id, table, key="val", step=3)
    assert "smooth_curve" not in read_table(client, run_id, "reliability/val/step_000003.json", tmp_path)


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
