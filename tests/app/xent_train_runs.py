"""Running the real ``xent-train`` in a subprocess, and reading what it left in MLflow."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

# The console script that `pip install -e .` put beside this interpreter.
XENT_TRAIN = Path(sys.executable).with_name("xent-train")
REPOSITORY = Path(__file__).resolve().parents[2]

# One short epoch: enough for every hook that logs (fit, validation, test) to run once.
FEW_BATCHES = (
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2",
    "trainer.enable_progress_bar=false",
)


def run_xent_train(
    cwd: Path, *overrides: str, as_module: bool = False, timeout: float = 600
) -> subprocess.CompletedProcess:
    """Run ``xent-train <overrides>`` (or ``python -m xent_plugin.app.train``) from ``cwd``; fail the test if
    it fails."""
    program = [sys.executable, "-m", "xent_plugin.app.train"] if as_module else [str(XENT_TRAIN)]
    result = subprocess.run(
        [*program, *overrides], cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )
    if result.returncode != 0:
        pytest.fail(f"xent-train {' '.join(overrides)} exited with {result.returncode}:\n{output_tail(result)}")
    return result


def start_xent_train(
    cwd: Path, *overrides: str, env: dict[str, str] | None = None, program: list[str] | None = None
) -> subprocess.Popen:
    """Start ``xent-train <overrides>`` (or ``program <overrides>``, as a launcher would) from ``cwd`` without
    waiting, in its own process group, with the repository root on ``PYTHONPATH`` so
    ``+callbacks.x._target_=tests.app...`` can be imported."""
    python_path = os.pathsep.join(filter(None, [str(REPOSITORY), os.environ.get("PYTHONPATH")]))
    return subprocess.Popen(
        [*(program or [str(XENT_TRAIN)]), *overrides],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": python_path, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def finish(process: subprocess.Popen, timeout: float = 600) -> subprocess.CompletedProcess:
    """Wait for a started ``xent-train``; kill its process group and fail the test if it overruns ``timeout``."""
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate(timeout=30)
        pytest.fail(f"xent-train ran past {timeout} s:\n{stderr[-4000:]}")
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def sqlite_uri(directory: Path) -> str:
    """The tracking URI that ``xent-train`` uses by default when started from ``directory``."""
    return f"sqlite:///{directory / 'mlflow.db'}"


def runs_in(client: MlflowClient) -> list[Run]:
    experiments = [experiment.experiment_id for experiment in client.search_experiments()]
    return client.search_runs(experiments)


def artifact_paths(client: MlflowClient, run_id: str) -> list[str]:
    return [item.path for item in client.list_artifacts(run_id)]


def output_tail(result: subprocess.CompletedProcess, characters: int = 6000) -> str:
    return f"--- stdout ---\n{result.stdout[-characters:]}\n--- stderr ---\n{result.stderr[-characters:]}"
