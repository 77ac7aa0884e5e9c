"""ResilientMLFlowLogger against a real SQLite store: batching, and continuing a run without duplicate steps."""

from __future__ import annotations

import warnings

import pytest
from mlflow.tracking import MlflowClient

from xent_plugin.integrations.mlflow import ResilientMLFlowLogger


@pytest.fixture(scope="module")
def tracking_uri(tmp_path_factory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


@pytest.fixture
def make_logger(request, tracking_uri, tmp_path):
    def make(**kwargs) -> ResilientMLFlowLogger:
        return ResilientMLFlowLogger(
            experiment_name=request.node.name,
            tracking_uri=tracking_uri,
            artifact_location=(tmp_path / "artifacts").as_uri(),
            **kwargs,
        )

    return make


def history(logger: ResilientMLFlowLogger, key: str) -> list[tuple[int, float]]:
    points = MlflowClient(logger._tracking_uri).get_metric_history(logger.run_id, key)
    return sorted((point.step, point.value) for point in points)


def test_a_continued_run_keeps_its_first_points_and_logs_only_later_steps(make_logger):
    first = make_logger()
    for step in range(4):
        first.log_metrics({"val/cross_entropy": float(step)}, step=step)
    first.finalize("KILLED")

    resumed = make_logger(run_id=first.run_id)
    with pytest.warns(UserWarning) as caught:
        for step in range(2, 6):
            resumed.log_metrics({"val/cross_entropy": 10.0 + step, "val/new_key": 20.0 + step}, step=step)
        resumed.finalize("success")

    assert [str(warning.message).split(": run")[0] for warning in caught] == [
        "ResilientMLFlowLogger: not logging 1 point again (val/cross_entropy at step 2)",
        "ResilientMLFlowLogger: not logging 1 point again (val/cross_entropy at step 3)",
    ]
    assert f"run {first.run_id} had them before" in str(caught[0].message)

    assert history(resumed, "val/cross_entropy") == [(0, 0.0), (1, 1.0), (2, 2.0), (3, 3.0), (4, 14.0), (5, 15.0)]
    assert history(resumed, "val/new_key") == [(2, 22.0), (3, 23.0), (4, 24.0), (5, 25.0)]
    assert resumed.pending_metrics == 0


def test_a_continued_run_reads_each_keys_history_once(make_logger, monkeypatch):
    first = make_logger()
    first.log_metrics({"loss": 1.0}, step=0)
    resumed = make_logger(run_id=first.run_id)
    reads = []
    first.finalize("success")
    client = resumed.experiment
    read_history = client.get_metric_history
    monkeypatch.setattr(
        client, "get_metric_history", lambda run_id, key: reads.append(key) or read_history(run_id, key)
    )

    for step in range(1, 4):
        resumed.log_metrics({"loss": float(step), "acc": 0.5}, step=step)
    assert resumed.flush()

    assert sorted(reads) == ["acc", "loss"]
    assert [step for step, _ in history(resumed, "loss")] == [0, 1, 2, 3]


def test_a_new_run_logs_every_point_even_at_a_repeated_step(make_logger):
    logger = make_logger()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # Different values: MLflow's store keeps one row for the same key, step, value and millisecond.
        logger.log_metrics({"epoch": 0.0}, step=3)
        logger.log_metrics({"epoch": 1.0}, step=3)
        assert logger.flush()

    assert history(logger, "epoch") == [(3, 0.0), (3, 1.0)]


def test_more_than_a_thousand_metrics_at_one_step_all_arrive(make_logger):
    logger = make_logger()
    logger.log_metrics({f"m{index}": float(index) for index in range(2500)}, step=1)
    assert logger.flush()

    assert logger.pending_metrics == 0
    assert len(MlflowClient(logger._tracking_uri).get_run(logger.run_id).data.metrics) == 2500
