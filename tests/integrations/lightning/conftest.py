"""One real SQLite MLflow store for the session (creating its tables takes seconds); an experiment per test."""

from __future__ import annotations

import pytest

from xent_plugin.integrations.mlflow import ResilientMLFlowLogger


@pytest.fixture(scope="session")
def tracking_uri(tmp_path_factory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


@pytest.fixture
def mlflow_logger(request, tmp_path, tracking_uri) -> ResilientMLFlowLogger:
    return ResilientMLFlowLogger(
        experiment_name=request.node.name,
        tracking_uri=tracking_uri,
        artifact_location=(tmp_path / "artifacts").as_uri(),
    )
