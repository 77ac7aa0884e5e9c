"""`xent-train logger.tracking_uri=http://...` sends the run to a real `mlflow server` and nothing to local files."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from tests.app.xent_train_runs import FEW_BATCHES, artifact_paths, run_xent_train, runs_in

pytestmark = pytest.mark.slow


def test_a_run_against_a_tracking_server_lands_on_the_server(tmp_path, mlflow_server):
    workdir = tmp_path / "work"
    workdir.mkdir()

    result = run_xent_train(workdir, f"logger.tracking_uri={mlflow_server}", *FEW_BATCHES, "hydra.run.dir=run")

    client = MlflowClient(mlflow_server)
    (run,) = runs_in(client)
    assert run.info.status == "FINISHED"
    assert "val/cross_entropy" in run.data.metrics
    assert run.data.params["logger.tracking_uri"] == mlflow_server
    assert "config.yaml" in artifact_paths(client, run.info.run_id)
    assert list((tmp_path / "server" / "artifacts").rglob("config.yaml"))
    assert sorted(path.name for path in workdir.iterdir()) == ["run"]
    assert f"review it at {mlflow_server}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}" in (
        result.stdout + result.stderr
    )
