"""Two processes that open one fresh SQLite store at the same moment both get a working store."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

# Each process waits for the go file, then opens the store as ResilientMLFlowLogger does and logs into a run.
OPEN_AND_LOG = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from mlflow.tracking import MlflowClient
    from xent_plugin.integrations.mlflow.store import open_store_safely

    uri, go, name = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
    Path(f"{go}.{name}").touch()  # ready: MLflow is imported
    while not go.exists():
        time.sleep(0.005)
    open_store_safely(uri)
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("together")
    try:
        experiment_id = experiment.experiment_id if experiment else client.create_experiment("together")
    except Exception:  # the other process created it first
        experiment_id = client.get_experiment_by_name("together").experiment_id
    run_id = client.create_run(experiment_id, run_name=name).info.run_id
    client.log_metric(run_id, "loss", 1.0, step=0)
    print(run_id)
    """
)


@pytest.mark.slow
def test_two_processes_creating_one_sqlite_store_at_once_both_succeed(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    go = tmp_path / "go"
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", OPEN_AND_LOG, uri, str(go), name],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("first", "second")
    ]
    ready = [Path(f"{go}.{name}") for name in ("first", "second")]
    while not all(path.exists() for path in ready) and all(process.poll() is None for process in processes):
        time.sleep(0.05)
    go.touch()
    results = [process.communicate(timeout=300) for process in processes]

    assert [process.returncode for process in processes] == [0, 0], [stderr[-2000:] for _, stderr in results]
    client = MlflowClient(uri)
    run_ids = [stdout.strip() for stdout, _ in results]
    assert sorted(client.get_run(run_id).info.run_name for run_id in run_ids) == ["first", "second"]
    assert all(client.get_run(run_id).data.metrics == {"loss": 1.0} for run_id in run_ids)
