"""A real ``mlflow server`` on 127.0.0.1 for the tracking-server tests, over SQLite or a real PostgreSQL."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

MLFLOW = Path(sys.executable).with_name("mlflow")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def mlflow_server(tmp_path) -> Iterator[str]:
    """A real ``mlflow server`` on 127.0.0.1 with a SQLite backend and local artifacts; yields its URL."""
    directory = tmp_path / "server"
    directory.mkdir()
    yield from serve_mlflow(directory, f"sqlite:///{directory / 'server.db'}")


def serve_mlflow(directory: Path, backend_store_uri: str) -> Iterator[str]:
    """Run ``mlflow server`` on a free port of 127.0.0.1 over ``backend_store_uri``, artifacts under
    ``directory``; yield its URL once it answers, stop it (its whole process group) afterwards."""
    port = _free_port()
    log_path = directory / "server.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [str(MLFLOW), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
            + ["--backend-store-uri", backend_store_uri]
            + ["--artifacts-destination", str(directory / "artifacts")],
            cwd=directory,
            env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so its workers stop with it
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_healthy(url, process, log_path, timeout_s=180)
        yield url
    finally:
        _stop(process)


def _wait_until_healthy(url: str, process: subprocess.Popen, log_path: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"mlflow server exited with {process.returncode}:\n{log_path.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    pytest.fail(f"mlflow server at {url} was not healthy after {timeout_s} s:\n{log_path.read_text()[-4000:]}")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=20)
