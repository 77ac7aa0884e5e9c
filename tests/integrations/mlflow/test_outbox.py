"""The outbox against a real SQLite store: order, keeping and re-sending, idempotent retries, the spool, resume."""

from __future__ import annotations

import json
import socket
import threading
import time
import warnings
from pathlib import Path
from unittest.mock import patch

import pytest
import torch
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from xent_plugin.integrations.mlflow import outbox as outbox_module
from xent_plugin.integrations.mlflow.artifacts import queue_reliability_figures, reliability_tables, upload_table
from xent_plugin.integrations.mlflow.outbox import Outbox, read_spool


class Switchable:
    """A real client behind a switch: while ``down``, every call fails as a refused connection would; with
    ``lose_answers`` set, the next calls of that name reach the store but fail afterwards, as a request whose
    answer timed out."""

    def __init__(self, client: MlflowClient) -> None:
        self.client = client
        self.down = False
        self.lose_answers: dict[str, int] = {}
        self.calls: list[str] = []

    def __getattr__(self, name: str):
        method = getattr(self.client, name)

        def call(*args, **kwargs):
            self.calls.append(name)
            if self.down:
                raise MlflowException(f"API request to {name} failed: Connection refused")
            result = method(*args, **kwargs)
            if self.lose_answers.get(name, 0) > 0:
                self.lose_answers[name] -= 1
                raise MlflowException(f"API request to {name} failed: Read timed out")
            return result

        return call


@pytest.fixture
def switchable(client) -> Switchable:
    return Switchable(client)


def make_outbox(client, run_id, **options) -> Outbox:
    return Outbox(lambda: (client, run_id), tracking_uri="sqlite:///test", source="test", **options)


@pytest.fixture
def unreachable_client(monkeypatch) -> MlflowClient:
    """A client of a tracking server that is not there, failing at once instead of retrying."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    return MlflowClient(tracking_uri=f"http://127.0.0.1:{port}")


def artifact_paths(client, run_id, path) -> list[str]:
    return [artifact.path for artifact in client.list_artifacts(run_id, path)]


def full_size_images(client, run_id) -> list[tuple[str, int]]:
    paths = sorted(path for path in artifact_paths(client, run_id, "images") if path.endswith(".png"))
    return [(path.split("+")[0], int(path.split("+")[2])) for path in paths]


def series(client, run_id, key) -> list[tuple[int, float]]:
    return sorted((point.step, point.value) for point in client.get_metric_history(run_id, key))


def listed_tables(client, run_id) -> list[str]:
    """The paths the run's ``mlflow.loggedArtifacts`` tag lists as tables, in its order."""
    entries = json.loads(client.get_run(run_id).data.tags.get("mlflow.loggedArtifacts", "[]"))
    return [entry["path"] for entry in entries if entry["type"] == "table"]


def table_column(client, run_id, path, name, tmp_path) -> list:
    content = json.loads(Path(client.download_artifacts(run_id, path, str(tmp_path))).read_text())
    return [row[content["columns"].index(name)] for row in content["data"]]


def one_table(step: int) -> dict[str, dict]:
    return {f"reliability/val/step_{step:06d}.json": {"columns": ["step"], "data": [[step]]}}


def test_a_failed_diagram_warns_once_naming_key_step_and_error(unreachable_client, table):
    outbox = make_outbox(unreachable_client, "0" * 32, retry_after_s=60)
    with pytest.warns(UserWarning) as caught:
        queue_reliability_figures(outbox, table, key="val/reliability", step=7, ece=0.1)
        assert not outbox.flush()
    messages = [str(warning.message) for warning in caught]
    assert messages[0].startswith(
        "test: could not log reliability diagram 'val/reliability' at step 7 to sqlite:///test (MlflowException"
    )
    assert messages[0].endswith("kept, and re-sent in order when the server answers.")
    assert outbox.failed == [
        "reliability diagram 'val/reliability' at step 7",
        "reliability table 'val/reliability' at step 7",
    ]


def test_every_kind_of_held_back_write_is_recorded_in_order(unreachable_client, table):
    outbox = make_outbox(unreachable_client, "0" * 32, retry_after_s=60)
    with pytest.warns(UserWarning) as caught:
        outbox.log_tables(one_table(1), what="reliability table 'val/reliability' at step 1")
        outbox.log_metrics({"val/ece": 0.1, "val/nll": 0.7}, step=1)
        outbox.flush()
    assert outbox.failed == ["reliability table 'val/reliability' at step 1", "2 metrics at step 1 (val/ece, val/nll)"]
    assert len(caught) == 2
    assert outbox.pending == 2 and outbox.pending_metrics == 2


def test_a_malformed_table_is_reported_not_raised(client, run_id, table):
    del table["accuracy"]
    outbox = make_outbox(client, run_id)
    with pytest.warns(
        UserWarning, match=r"could not log reliability diagram 'val' at step 0 \(ValueError: `table` must"
    ):
        queue_reliability_figures(outbox, table, key="val", step=0)
    assert outbox.failed == ["reliability diagram 'val' at step 0"]
    assert outbox.flush() and artifact_paths(client, run_id, "reliability") == []


def test_a_malformed_smooth_curve_is_reported_not_raised(client, run_id, table, smooth_curve):
    del smooth_curve["lower"]
    outbox = make_outbox(client, run_id)
    with pytest.warns(UserWarning, match=r"reliability diagram 'val' at step 0 \(ValueError: `smooth_curve` must"):
        queue_reliability_figures(outbox, table, key="val", step=0, smooth_curve=smooth_curve)
    assert outbox.failed == ["reliability diagram 'val' at step 0"]


def test_successful_writes_are_silent_and_complete(client, run_id, table):
    outbox = make_outbox(client, run_id)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        queue_reliability_figures(outbox, table, key="val", step=3)
        outbox.log_metrics({"val/ece": 0.25}, step=3)
        assert outbox.flush()
    assert outbox.failed == []
    assert artifact_paths(client, run_id, "reliability/val") == ["reliability/val/step_000003.json"]
    assert listed_tables(client, run_id) == ["reliability/val/step_000003.json"]
    assert full_size_images(client, run_id) == [("images/val", 3)]
    assert client.get_run(run_id).data.metrics == {"val/ece": 0.25}


def test_writes_are_sent_in_order_on_one_worker_thread_and_flush_waits_for_them(client, run_id):
    outbox = make_outbox(client, run_id)
    threads = []
    for step in range(4):
        outbox.log_tables(one_table(step), what=f"table {step}")
        outbox.call("thread probe", lambda client, run_id: threads.append(threading.current_thread()))
        outbox.log_metrics({"val/ece": step / 10}, step=step)
    assert outbox.flush()
    tables = artifact_paths(client, run_id, "reliability/val")
    assert tables == [f"reliability/val/step_{step:06d}.json" for step in range(4)]
    assert listed_tables(client, run_id) == tables
    assert series(client, run_id, "val/ece") == [(0, 0.0), (1, 0.1), (2, 0.2), (3, 0.3)]
    assert len(set(threads)) == 1 and threads[0] is not threading.current_thread()


def test_a_write_carries_the_values_of_the_call_not_later_ones(client, run_id, interval_table, smooth_curve, tmp_path):
    rendered = []
    outbox = make_outbox(client, run_id)
    release = threading.Event()
    outbox.call("blocker", lambda client, run_id: release.wait(10))
    interval_table["accuracy_upper"] = torch.tensor(interval_table["accuracy_upper"], dtype=torch.float64)
    metric = torch.tensor(0.5)
    with patch.object(
        outbox_module, "upload_image", lambda client, run_id, png, **kwargs: rendered.append(kwargs["step"])
    ):
        queue_reliability_figures(outbox, interval_table, key="val", step=2, smooth_curve=smooth_curve)
        outbox.log_metrics({"val/ece": metric}, step=0)
        interval_table["accuracy_upper"].fill_(9.0)
        metric.fill_(9.0)
        release.set()
        assert outbox.flush()
    assert rendered == [2]
    assert client.get_run(run_id).data.metrics == {"val/ece": 0.5}
    assert table_column(client, run_id, "reliability/val/step_000002.json", "accuracy_upper", tmp_path)[1] == 0.9


def test_more_than_a_thousand_points_go_in_batches_mlflow_accepts(client, run_id):
    metrics = {f"class_{index:04d}/ece": index / 2500 for index in range(2500)}
    outbox = make_outbox(client, run_id)
    with patch.object(client, "log_batch", wraps=client.log_batch) as log_batch:
        outbox.log_metrics(metrics, step=7)
        assert outbox.flush()
    assert [len(call.kwargs["metrics"]) for call in log_batch.call_args_list] == [1000, 1000, 500]
    assert client.get_run(run_id).data.metrics == metrics


def test_writes_held_back_by_an_outage_arrive_once_in_order_when_the_server_answers(switchable, client, run_id, table):
    outbox = make_outbox(switchable, run_id, retry_after_s=0)
    switchable.down = True
    with pytest.warns(UserWarning, match="could not log"):
        for step in range(3):
            outbox.log_metrics({"val/ece": step / 10}, step=step)
            queue_reliability_figures(outbox, table, key="val/reliability", step=step)
        assert not outbox.flush()
    switchable.down = False
    outbox.log_metrics({"val/ece": 0.3}, step=3)
    assert outbox.flush()
    assert series(client, run_id, "val/ece") == [(0, 0.0), (1, 0.1), (2, 0.2), (3, 0.3)]
    assert full_size_images(client, run_id) == [("images/val~reliability", step) for step in range(3)]
    tables = [f"reliability/val/reliability/step_{step:06d}.json" for step in range(3)]
    assert artifact_paths(client, run_id, "reliability/val/reliability") == tables
    assert listed_tables(client, run_id) == tables


def test_while_the_server_is_down_one_attempt_is_made_per_backoff_not_per_write(switchable, run_id):
    outbox = make_outbox(switchable, run_id, retry_after_s=60)
    switchable.down = True
    with pytest.warns(UserWarning):
        for step in range(5):
            outbox.log_metrics({"loss": 1.0}, step=step)
            outbox.flush()
    assert switchable.calls == ["log_batch"]


def test_an_image_whose_answer_was_lost_is_not_uploaded_twice(switchable, client, run_id, table):
    outbox = make_outbox(switchable, run_id, retry_after_s=0)
    switchable.lose_answers["set_tag"] = 1  # both files arrived; the follow-up call timed out
    with pytest.warns(UserWarning, match="Read timed out"):
        queue_reliability_figures(outbox, table, key="val/reliability", step=4)
        outbox.flush()
    assert outbox.flush()
    assert full_size_images(client, run_id) == [("images/val~reliability", 4)]
    assert len(artifact_paths(client, run_id, "images")) == 2  # the image and its thumbnail, once
    assert client.get_run(run_id).data.tags["mlflow.loggedImages"] == "True"


def test_a_table_whose_answer_was_lost_is_listed_once(switchable, client, run_id, table, smooth_curve, tmp_path):
    outbox = make_outbox(switchable, run_id, retry_after_s=0)
    switchable.lose_answers["set_tag"] = 1  # both files and the tag arrived; the answer to the tag timed out
    with pytest.warns(UserWarning, match="Read timed out"):
        outbox.log_tables(
            reliability_tables(table, key="val", step=4, smooth_curve=smooth_curve), what="the tables of step 4"
        )
        outbox.flush()
    assert outbox.flush()
    paths = ["reliability/val/step_000004.json", "reliability/val/step_000004_smooth_curve.json"]
    assert artifact_paths(client, run_id, "reliability/val") == paths
    assert listed_tables(client, run_id) == paths
    assert table_column(client, run_id, paths[0], "count", tmp_path) == table["count"]


def test_points_whose_answer_was_lost_are_not_logged_twice(switchable, client, run_id):
    outbox = make_outbox(switchable, run_id, retry_after_s=0)
    switchable.lose_answers["log_batch"] = 1
    with pytest.warns(UserWarning, match="Read timed out"):
        outbox.log_metrics({"val/ece": 0.1, "val/nll": 0.7}, step=0)
        outbox.flush()
    outbox.log_metrics({"val/ece": 0.2, "val/nll": 0.6}, step=1)
    assert outbox.flush()
    assert series(client, run_id, "val/ece") == [(0, 0.1), (1, 0.2)]
    assert series(client, run_id, "val/nll") == [(0, 0.7), (1, 0.6)]


@pytest.mark.timeout(30)
def test_a_hung_server_holds_a_flush_no_longer_than_max_wait_and_later_flushes_not_at_all(client, run_id):
    release = threading.Event()
    outbox = make_outbox(client, run_id, max_wait_s=0.2)
    outbox.call("a request the server never answers", lambda client, run_id: release.wait(30))
    outbox.log_metrics({"loss": 1.0}, step=0)
    assert not outbox.flush()
    while not outbox._stalled():
        time.sleep(0.01)
    assert not outbox.flush(timeout_s=60)  # returns at once: the test's timeout is far shorter
    release.set()
    while outbox._stalled():  # the server answers at last
        time.sleep(0.01)
    assert outbox.flush(timeout_s=30)
    assert series(client, run_id, "loss") == [(0, 1.0)]


def test_close_spools_what_is_unsent_and_says_how_to_send_it(switchable, run_id, table, tmp_path):
    outbox = make_outbox(switchable, run_id, spool_path=tmp_path / "spool.jsonl", retry_after_s=60)
    switchable.down = True
    with pytest.warns(UserWarning) as caught:
        outbox.log_metrics({"val/ece": 0.1}, step=0)
        queue_reliability_figures(outbox, table, key="val/reliability", step=0)
        outbox.set_terminated("FINISHED")
        assert outbox.close() == tmp_path / "spool.jsonl"
    assert str(caught[-1].message).endswith(
        f"python -m xent_plugin.integrations.mlflow.replay {tmp_path / 'spool.jsonl'}"
    )
    header, writes = read_spool(tmp_path / "spool.jsonl")
    assert header["run_id"] == run_id and header["tracking_uri"] == "sqlite:///test"
    assert [type(write).__name__ for write in writes] == ["MetricPoints", "ImageWrite", "TablesWrite", "TerminateWrite"]
    assert outbox.pending == 0


def test_a_write_that_cannot_be_spooled_is_named_at_close(switchable, run_id, tmp_path):
    outbox = make_outbox(switchable, run_id, spool_path=tmp_path / "spool.jsonl", retry_after_s=60)
    switchable.down = True
    with pytest.warns(UserWarning) as caught:
        outbox.log_metrics({"loss": 1.0}, step=0)
        outbox.call("the checkpoint artifacts", lambda client, run_id: None)
        outbox.close()
    assert any("could not spool: the checkpoint artifacts" in str(warning.message) for warning in caught)


def test_a_resent_spool_arrives_once_even_when_sent_twice_and_is_then_deleted(
    switchable, client, run_id, table, tmp_path
):
    spool = tmp_path / "spool.jsonl"
    first = make_outbox(switchable, run_id, spool_path=spool, retry_after_s=60)
    switchable.down = True
    with pytest.warns(UserWarning):
        for step in range(2):
            first.log_metrics({"val/ece": step / 10}, step=step)
            queue_reliability_figures(first, table, key="val/reliability", step=step)
        first.close()
    copy = tmp_path / "copy.jsonl"
    copy.write_text(spool.read_text())
    switchable.down = False

    for path in (spool, copy):
        second = make_outbox(client, run_id, continued=True)
        assert second.resend_spool(path) == 6  # per step: points, diagram, table
        assert second.flush()
        assert not path.exists()

    assert series(client, run_id, "val/ece") == [(0, 0.0), (1, 0.1)]
    assert full_size_images(client, run_id) == [("images/val~reliability", 0), ("images/val~reliability", 1)]
    assert listed_tables(client, run_id) == [f"reliability/val/reliability/step_{step:06d}.json" for step in (0, 1)]


def test_a_json_file_in_a_spool_from_before_tables_is_still_sent(client, run_id, tmp_path):
    spool = tmp_path / "spool.jsonl"
    lines = [
        {"kind": "run", "format": 1, "tracking_uri": "sqlite:///test", "run_id": run_id},
        {"kind": "json", "path": "reliability/val/step_000000.json", "content": {"bins": {}}, "what": "a table"},
    ]
    spool.write_text("\n".join(json.dumps(line) for line in lines))
    outbox = make_outbox(client, run_id, continued=True)
    assert outbox.resend_spool(spool) == 1
    assert outbox.flush()
    assert artifact_paths(client, run_id, "reliability/val") == ["reliability/val/step_000000.json"]


def test_a_continued_run_skips_diagrams_and_tables_it_already_has(client, run_id, table, tmp_path):
    first = make_outbox(client, run_id)
    for step in (0, 1):
        queue_reliability_figures(first, table, key="val/reliability", step=step)
    assert first.flush()

    resumed = make_outbox(client, run_id, continued=True)
    changed = {**table, "accuracy": [0.0] * 5}
    for step in (1, 2):
        for key in ("val/reliability", "val/reliability_equal_mass"):
            queue_reliability_figures(resumed, changed, key=key, step=step)
    assert resumed.flush()

    assert resumed.failed == []
    assert full_size_images(client, run_id) == [
        ("images/val~reliability", 0),
        ("images/val~reliability", 1),
        ("images/val~reliability", 2),
        ("images/val~reliability_equal_mass", 1),
        ("images/val~reliability_equal_mass", 2),
    ]
    tables = {
        key: [
            table_column(client, run_id, item.path, "accuracy", tmp_path)
            for item in client.list_artifacts(run_id, f"reliability/{key}")
        ]
        for key in ("val/reliability", "val/reliability_equal_mass")
    }
    assert tables == {
        "val/reliability": [[None, 0.5, None, 1.0, 0.5], [None, 0.5, None, 1.0, 0.5], [0.0] * 5],
        "val/reliability_equal_mass": [[0.0] * 5, [0.0] * 5],
    }
    assert sorted(listed_tables(client, run_id)) == [
        *(f"reliability/val/reliability/step_{step:06d}.json" for step in (0, 1, 2)),
        *(f"reliability/val/reliability_equal_mass/step_{step:06d}.json" for step in (1, 2)),
    ]


def test_a_continued_run_lists_a_table_file_it_had_but_never_listed(client, run_id, table, tmp_path):
    # As after a process that stopped between uploading a table and adding it to the run's tag.
    ((path, content),) = reliability_tables(table, key="val", step=0).items()
    upload_table(client, run_id, path, content)
    resumed = make_outbox(client, run_id, continued=True)
    resumed.log_tables({path: {"columns": ["count"], "data": [[9.0]]}}, what="the re-run epoch's table")
    assert resumed.flush()
    assert listed_tables(client, run_id) == [path]
    assert table_column(client, run_id, path, "count", tmp_path) == table["count"]  # the first is kept
