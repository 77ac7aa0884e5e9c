import json
import socket
import threading
import warnings
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from xent_plugin.integrations.mlflow import safe_writer as safe_mlflow_writer
from xent_plugin.integrations.mlflow.safe_writer import SafeMlflowWriter


@pytest.fixture
def unreachable_client(monkeypatch) -> MlflowClient:
    """A client of a tracking server that is not there, failing within a second instead of retrying."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    return MlflowClient(tracking_uri=f"http://127.0.0.1:{port}")


def artifact_paths(client, run_id, path) -> list[str]:
    return [artifact.path for artifact in client.list_artifacts(run_id, path)]


def test_failed_diagram_upload_warns_once_naming_key_and_step(unreachable_client, table):
    writer = SafeMlflowWriter(unreachable_client, "0" * 32)
    with pytest.warns(UserWarning) as caught:
        writer.log_reliability_diagram(table, key="val/reliability", step=7, ece=0.1)
    assert len(caught) == 1
    what, error = str(caught[0].message).split(" (", 1)
    assert what == "MLflow logging failed, not logged: reliability diagram 'val/reliability' at step 7"
    assert error.startswith("MlflowException")
    assert writer.failed == ["reliability diagram 'val/reliability' at step 7"]


def test_every_kind_of_failed_upload_is_recorded(unreachable_client, table):
    writer = SafeMlflowWriter(unreachable_client, "0" * 32)
    with pytest.warns(UserWarning) as caught:
        writer.log_reliability_table(table, key="val/reliability", step=1)
        writer.log_metrics({"val/ece": 0.1, "val/nll": 0.7}, step=1)
    assert writer.failed == ["reliability table 'val/reliability' at step 1", "2 metrics at step 1"]
    assert len(caught) == 2


def test_malformed_table_is_reported_not_raised(client, run_id, table):
    del table["accuracy"]
    writer = SafeMlflowWriter(client, run_id)
    with pytest.warns(UserWarning, match=r"reliability table 'val' at step 0 \(ValueError: `table` must"):
        writer.log_reliability_table(table, key="val", step=0)
    assert writer.failed == ["reliability table 'val' at step 0"]
    assert artifact_paths(client, run_id, "reliability") == []


def test_successful_uploads_are_silent_and_complete(client, run_id, table):
    writer = SafeMlflowWriter(client, run_id)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        writer.log_reliability_table(table, key="val", step=3)
        writer.log_metrics({"val/ece": 0.25}, step=3)
    assert writer.failed == []
    assert artifact_paths(client, run_id, "reliability/val") == ["reliability/val/step_000003.json"]
    assert client.get_run(run_id).data.metrics == {"val/ece": 0.25}


def test_background_uploads_run_in_order_on_one_worker_and_flush_waits_for_them(client, run_id, table):
    writer = SafeMlflowWriter(client, run_id, background=True)
    threads = []
    for step in range(4):
        writer.log_reliability_table(table, key="val", step=step)
        writer.submit("thread probe", lambda client, run_id: threads.append(threading.current_thread()))
        writer.log_metrics({"val/ece": step / 10}, step=step)
    writer.flush()
    tables = artifact_paths(client, run_id, "reliability/val")
    assert tables == [f"reliability/val/step_{step:06d}.json" for step in range(4)]
    history = client.get_metric_history(run_id, "val/ece")
    assert [(metric.step, metric.value) for metric in history] == [(0, 0.0), (1, 0.1), (2, 0.2), (3, 0.3)]
    assert len(set(threads)) == 1 and threads[0] is not threading.current_thread()
    writer.close()


def test_background_upload_sees_the_values_of_the_call_not_later_ones(client, run_id, table):
    writer = SafeMlflowWriter(client, run_id, background=True)
    release = threading.Event()
    writer.submit("blocker", lambda client, run_id: release.wait(10))
    metric = torch.tensor(0.5)
    writer.log_metrics({"val/ece": metric}, step=0)
    metric.fill_(9.0)
    release.set()
    writer.close()
    assert client.get_run(run_id).data.metrics == {"val/ece": 0.5}


def test_background_failures_are_warned_in_the_callers_thread_by_flush(unreachable_client, table):
    writer = SafeMlflowWriter(unreachable_client, "0" * 32, background=True)
    release = threading.Event()
    writer.submit("blocker", lambda client, run_id: release.wait(10))
    writer.log_reliability_table(table, key="val", step=5)
    writer.log_metrics({"val/ece": 0.1}, step=5)
    release.set()
    with pytest.warns(UserWarning) as caught:
        writer.flush()
    assert [str(warning.message).split(" (")[0] for warning in caught] == [
        "MLflow logging failed, not logged: reliability table 'val' at step 5",
        "MLflow logging failed, not logged: 1 metrics at step 5",
    ]
    assert writer.failed == ["reliability table 'val' at step 5", "1 metrics at step 5"]
    writer.close()


def test_close_reports_what_failed_and_later_calls_run_in_the_callers_thread(client, run_id):
    writer = SafeMlflowWriter(client, run_id, background=True)
    release = threading.Event()
    writer.submit("blocker", lambda client, run_id: release.wait(10))
    writer.submit("doomed upload", lambda client, run_id: 1 / 0)
    release.set()
    with pytest.warns(UserWarning, match=r"not logged: doomed upload \(ZeroDivisionError"):
        writer.close()
    threads = []
    writer.submit("thread probe", lambda client, run_id: threads.append(threading.current_thread()))
    assert threads == [threading.current_thread()]


def test_background_diagram_gets_copies_of_the_table_and_curve_of_the_call(monkeypatch, interval_table, smooth_curve):
    calls = []
    monkeypatch.setattr(
        safe_mlflow_writer, "log_reliability_diagram", lambda client, run_id, **kwargs: calls.append(kwargs)
    )
    monkeypatch.setattr(safe_mlflow_writer, "logged_image_steps", lambda client, run_id: set())
    writer = SafeMlflowWriter(None, "run-id", background=True)
    release = threading.Event()
    writer.submit("blocker", lambda client, run_id: release.wait(10))
    interval_table["accuracy_upper"] = torch.tensor(interval_table["accuracy_upper"], dtype=torch.float64)
    smooth_curve["accuracy"] = torch.tensor(smooth_curve["accuracy"], dtype=torch.float64)
    writer.log_reliability_diagram(
        interval_table, key="val", step=2, ece=0.1, smooth_curve=smooth_curve, binning="equal_mass"
    )
    interval_table["accuracy_upper"].fill_(9.0)
    smooth_curve["accuracy"].fill_(9.0)
    release.set()
    writer.close()
    (call,) = calls
    assert (call["key"], call["step"], call["ece"], call["binning"]) == ("val", 2, 0.1, "equal_mass")
    assert call["table"]["accuracy_upper"][1] == 0.9
    assert call["smooth_curve"]["accuracy"][2] == 0.15
    assert call["smooth_curve"]["smooth_ece"] == 0.0456


def test_diagram_without_the_new_options_is_logged_as_before(monkeypatch, table):
    calls = []
    monkeypatch.setattr(
        safe_mlflow_writer, "log_reliability_diagram", lambda client, run_id, **kwargs: calls.append(kwargs)
    )
    monkeypatch.setattr(safe_mlflow_writer, "logged_image_steps", lambda client, run_id: set())
    SafeMlflowWriter(None, "run-id").log_reliability_diagram(table, key="val", step=1, ece=0.2)
    (call,) = calls
    assert (call["smooth_curve"], call["binning"], call["ece"]) == (None, "equal_width", 0.2)


def test_malformed_smooth_curve_is_reported_not_raised(client, run_id, table, smooth_curve):
    del smooth_curve["lower"]
    writer = SafeMlflowWriter(client, run_id)
    with pytest.warns(UserWarning, match=r"reliability diagram 'val' at step 0 \(ValueError: `smooth_curve` must"):
        writer.log_reliability_diagram(table, key="val", step=0, smooth_curve=smooth_curve)
    assert writer.failed == ["reliability diagram 'val' at step 0"]


def test_table_with_intervals_and_curve_is_uploaded_through_the_writer(client, run_id, interval_table, smooth_curve):
    writer = SafeMlflowWriter(client, run_id, background=True)
    writer.log_reliability_table(interval_table, key="val", step=6, smooth_curve=smooth_curve)
    writer.close()
    assert writer.failed == []
    assert artifact_paths(client, run_id, "reliability/val") == ["reliability/val/step_000006.json"]


def test_a_writer_on_a_continued_run_skips_diagrams_and_tables_the_run_already_has(client, run_id, table, tmp_path):
    first = SafeMlflowWriter(client, run_id)
    for step in (0, 1):
        first.log_reliability_diagram(table, key="val/reliability", step=step)
        first.log_reliability_table(table, key="val/reliability", step=step)
    first.close()

    resumed = SafeMlflowWriter(client, run_id, background=True)
    changed = {**table, "accuracy": [0.0] * 5}
    for step in (1, 2):
        for key in ("val/reliability", "val/reliability_equal_mass"):
            resumed.log_reliability_diagram(changed, key=key, step=step)
            resumed.log_reliability_table(changed, key=key, step=step)
    resumed.close()

    full_size = sorted(path for path in artifact_paths(client, run_id, "images") if path.endswith(".png"))
    assert resumed.failed == []
    assert [(path.split("+")[0], int(path.split("+")[2])) for path in full_size] == [
        ("images/val~reliability", 0),
        ("images/val~reliability", 1),
        ("images/val~reliability", 2),
        ("images/val~reliability_equal_mass", 1),
        ("images/val~reliability_equal_mass", 2),
    ]
    tables = {
        key: [
            json.loads(Path(client.download_artifacts(run_id, item.path, tmp_path)).read_text())["bins"]["accuracy"]
            for item in client.list_artifacts(run_id, f"reliability/{key}")
        ]
        for key in ("val/reliability", "val/reliability_equal_mass")
    }
    assert tables == {
        "val/reliability": [[None, 0.5, None, 1.0, 0.5], [None, 0.5, None, 1.0, 0.5], [0.0] * 5],
        "val/reliability_equal_mass": [[0.0] * 5, [0.0] * 5],
    }
