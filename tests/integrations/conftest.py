"""A real SQLite-backed MLflow store shared by the tracking tests, with a fresh run per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from mlflow.tracking import MlflowClient
from mlflow.tracking._tracking_service import utils as tracking_utils


@pytest.fixture(scope="package")
def mlflow_experiment(tmp_path_factory: pytest.TempPathFactory) -> tuple[MlflowClient, str]:
    # One store for the package: creating the SQLite schema takes seconds, a run takes milliseconds.
    root = tmp_path_factory.mktemp("mlflow")
    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    experiment_id = client.create_experiment("tracking", artifact_location=(root / "artifacts").as_uri())
    return client, experiment_id


@pytest.fixture
def client(mlflow_experiment: tuple[MlflowClient, str]) -> MlflowClient:
    return mlflow_experiment[0]


@pytest.fixture
def global_tracking_uri(client: MlflowClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """MLflow's global tracking URI pointed at ``client``'s store for one test: ``load_table`` finds runs with
    ``mlflow.search_runs``, which asks the global URI, not the client's. The environment variable alone is not
    enough, since a URI that ``mlflow.set_tracking_uri`` left behind (Lightning's MLFlowLogger sets one) comes first.
    """
    monkeypatch.setenv("MLFLOW_TRACKING_URI", client.tracking_uri)
    monkeypatch.setattr(tracking_utils, "_tracking_uri", None)


@pytest.fixture
def run_id(mlflow_experiment: tuple[MlflowClient, str]) -> Iterator[str]:
    client, experiment_id = mlflow_experiment
    run_id = client.create_run(experiment_id).info.run_id
    yield run_id
    client.set_terminated(run_id)


@pytest.fixture
def table() -> dict[str, list[float]]:
    """Five bins, two of them empty: the table of confidences [0.3, 0.35, 0.7, 0.75, 0.95, 0.9] with
    correctness [1, 0, 1, 1, 1, 0], worked out by hand."""
    nan = float("nan")
    return {
        "lower": [0.0, 0.2, 0.4, 0.6, 0.8],
        "upper": [0.2, 0.4, 0.6, 0.8, 1.0],
        "count": [0.0, 2.0, 0.0, 2.0, 2.0],
        "confidence": [nan, 0.325, nan, 0.725, 0.925],
        "accuracy": [nan, 0.5, nan, 1.0, 0.5],
    }


@pytest.fixture
def interval_table(table) -> dict[str, list[float]]:
    """``table`` with per-bin intervals, NaN for the empty bins; the last bin's accuracy interval excludes its
    accuracy of 0.5, as a percentile interval may."""
    nan = float("nan")
    return {
        **table,
        "accuracy_lower": [nan, 0.1, nan, 0.6, 0.55],
        "accuracy_upper": [nan, 0.9, nan, 1.0, 0.8],
        "confidence_lower": [nan, 0.3, nan, 0.7, 0.9],
        "confidence_upper": [nan, 0.35, nan, 0.75, 0.95],
    }


@pytest.fixture
def smooth_curve() -> dict[str, object]:
    """A smoothed curve on an 11-point grid, unknown (NaN) below confidence 0.2 where no data is near."""
    nan = float("nan")
    return {
        "confidence": [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0],
        "accuracy": [nan, nan, 0.15, 0.25, 0.34, 0.42, 0.5, 0.6, 0.68, 0.8, 0.9],
        "lower": [nan, nan, 0.0, 0.1, 0.25, 0.36, 0.45, 0.55, 0.64, 0.76, 0.85],
        "upper": [nan, nan, 0.4, 0.4, 0.43, 0.48, 0.55, 0.65, 0.72, 0.84, 0.95],
        "density": [0.0, 0.0, 0.1, 0.4, 0.8, 1.2, 1.5, 1.6, 1.5, 1.4, 1.5],
        "bandwidth": 0.07,
        "smooth_ece": 0.0456,
    }
