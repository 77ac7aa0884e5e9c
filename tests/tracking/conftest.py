"""A real SQLite-backed MLflow store shared by the tracking tests, with a fresh run per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from mlflow.tracking import MlflowClient


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
