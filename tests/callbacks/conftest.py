"""A real SQLite MLflow store per test."""

from __future__ import annotations

import pytest

from xent_plugin.loggers import ResilientMLFlowLogger


@pytest.fixture
def tracking_uri(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


@pytest.fixture
def mlflow_logger(tmp_path, tracking_uri) -> ResilientMLFlowLogger:
    return ResilientMLFlowLogger(
        experiment_name="tests",
        tracking_uri=tracking_uri,
        artifact_location=(tmp_path / "artifacts").as_uri(),
    )
