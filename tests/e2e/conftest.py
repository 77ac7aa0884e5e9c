"""What the end-to-end tests start for real: ``mlflow server``, the ``xent-train`` console script and Chromium.

- :class:`TrackingServer` runs ``mlflow server`` on 127.0.0.1 with a SQLite backend and local artifacts. It can
  be stopped and started again on the same port and store, as an outage would; the session shares one.
- :func:`run_xent_train` / :func:`start_xent_train` run the console script as a user would, with the repository
  root on ``PYTHONPATH`` so configs can name the plug-ins in :mod:`tests.e2e.plugins`.
- :func:`chromium_executable` finds Debian's ``chromium``; it never downloads one.
- :func:`save_screenshot` keeps a screenshot under the test's tmp dir and copies it to ``test-artifacts/``.
- :func:`epoch_at_step` and :func:`image_steps` read a run's series back from MLflow.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT_COPIES = REPO_ROOT / "test-artifacts"
# The console scripts that `pip install -e .` put beside this interpreter.
XENT_TRAIN = Path(sys.executable).with_name("xent-train")
MLFLOW = Path(sys.executable).with_name("mlflow")

# Few batches, no progress bar: every hook that logs (fit, validation, test) still runs each epoch.
FAST = (
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2",
    "trainer.enable_progress_bar=false",
)

# Nothing here may reach the internet: no telemetry from the client, the server or the UI.
OFFLINE_ENV = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}

# Debian's chromium, headless, with everything that would phone home switched off.
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
REQUIRE_BROWSER_ENV = "XENT_REQUIRE_BROWSER"


# ---- mlflow server -------------------------------------------------------------------------------------


class TrackingServer:
    """A real ``mlflow server`` on 127.0.0.1: SQLite backend, ``--artifacts-destination`` on local disk.

    ``stop()`` then ``start()`` brings it back on the same port with the same store, as after an outage.
    The server runs in its own process group, so its uvicorn worker stops with it.
    """

    # Start-up imports MLflow twice (CLI, then uvicorn's worker): ~25 s on 2 busy cores, so allow plenty.
    START_TIMEOUT_S = 240.0

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.store_uri = f"sqlite:///{root / 'mlflow.db'}"
        self.artifacts = root / "artifacts"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = root / "server.log"
        self._process: subprocess.Popen | None = None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        command = [str(MLFLOW), "server", "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"]
        command += ["--backend-store-uri", self.store_uri, "--artifacts-destination", str(self.artifacts)]
        # The job runner (huey consumers) serves GenAI jobs only; without it the server is two processes.
        env = {**os.environ, **OFFLINE_ENV, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        with self.log_path.open("a") as log:
            self._process = subprocess.Popen(
                command, cwd=self.root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self._wait_until_healthy()

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
        # The worker may outlive the parent by a moment; the port must be free before a restart binds it.
        deadline = time.monotonic() + 30
        while _accepts_connections(self.port) and time.monotonic() < deadline:
            time.sleep(0.2)

    def log_tail(self, characters: int = 4000) -> str:
        return self.log_path.read_text()[-characters:] if self.log_path.exists() else ""

    def _wait_until_healthy(self) -> None:
        deadline = time.monotonic() + self.START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                pytest.fail(f"mlflow server exited during start-up:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.5)
        self.stop()
        pytest.fail(f"mlflow server at {self.url} not healthy after {self.START_TIMEOUT_S} s:\n{self.log_tail()}")


@pytest.fixture(scope="session")
def tracking_server(tmp_path_factory) -> Iterator[TrackingServer]:
    """One ``mlflow server`` for the session; a test that stops it must start it again (see the outage test)."""
    server = TrackingServer(tmp_path_factory.mktemp("mlflow-server"))
    try:
        server.start()
        yield server
    finally:
        server.stop()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _accepts_connections(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


# ---- xent-train ----------------------------------------------------------------------------------------


def xent_train_env() -> dict[str, str]:
    """The environment a user's shell would give ``xent-train``, plus the repository root for the plug-ins."""
    python_path = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    # Fail fast against a stopped server instead of MLflow's default 7 retries with backoff.
    return {**os.environ, **OFFLINE_ENV, "PYTHONPATH": python_path, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}


_started: list[subprocess.Popen] = []


def start_xent_train(cwd: Path, overrides: Sequence[str]) -> subprocess.Popen:
    """Start ``xent-train <overrides>`` from ``cwd`` without waiting; stdout and stderr are pipes.

    It runs in its own process group; whatever is still running when the session ends is killed.
    """
    process = subprocess.Popen(
        [str(XENT_TRAIN), *overrides],
        cwd=cwd,
        env=xent_train_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    _started.append(process)
    return process


@pytest.fixture(scope="session", autouse=True)
def _no_stray_xent_train() -> Iterator[None]:
    yield
    for process in _started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate(timeout=30)


def finish(process: subprocess.Popen, timeout: float = 420) -> subprocess.CompletedProcess:
    """Wait for a started ``xent-train``; kill its process group if it overruns ``timeout``."""
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate(timeout=30)
        pytest.fail(f"xent-train ran past {timeout} s:\n{stderr[-4000:]}")
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def run_xent_train(cwd: Path, *overrides: str, check: bool = True, timeout: float = 420) -> subprocess.CompletedProcess:
    """Run ``xent-train <overrides>`` from ``cwd``; with ``check``, fail the test with its output unless it exits 0."""
    result = finish(start_xent_train(cwd, overrides), timeout)
    if check and result.returncode != 0:
        pytest.fail(f"xent-train {' '.join(overrides)} exited with {result.returncode}:\n{output_tail(result)}")
    return result


def output_tail(result: subprocess.CompletedProcess, characters: int = 4000) -> str:
    return f"--- stdout ---\n{result.stdout[-characters:]}\n--- stderr ---\n{result.stderr[-characters:]}"


# ---- reading a run back -------------------------------------------------------------------------------


def epoch_at_step(client, run_id: str) -> dict[int, int]:
    """Lightning logs ``epoch`` with every call to the logger, at the same step: it maps steps to epochs."""
    return {int(point.step): int(point.value) for point in client.get_metric_history(run_id, "epoch")}


def image_steps(client, run_id: str, key: str = "val/reliability") -> list[int]:
    """The steps of the images logged under ``key``, sorted, one entry per full-size image.

    MLflow 3 stores ``log_image(key=..., step=n)`` as ``images/<key with / as ~>+step+<n>+...png`` and a
    ``...+compressed.webp`` thumbnail.
    """
    pattern = re.compile(rf"^images/{re.escape(key.replace('/', '~'))}\+step\+(\d+)\+.*\.png$")
    paths = [item.path for item in client.list_artifacts(run_id, "images")]
    return sorted(int(match.group(1)) for path in paths if (match := pattern.match(path)))


# ---- Chromium ------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def chromium_executable() -> str:
    """Debian's chromium, found on PATH; skip without it, or fail where ``XENT_REQUIRE_BROWSER=1`` (CI)."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    problem = None
    if path is None:
        problem = "Debian's chromium is not installed (`make browser` installs it with apt when run as root)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            problem = "the playwright Python package is missing (`pip install -e .[dev]`)"
    if problem is None:
        return path
    if os.environ.get(REQUIRE_BROWSER_ENV) == "1":
        pytest.fail(f"{problem}, and {REQUIRE_BROWSER_ENV}=1 requires the browser tests to run.")
    pytest.skip(f"{problem}; the browser test needs it. Set {REQUIRE_BROWSER_ENV}=1 to make this a failure.")


def save_screenshot(page, tmp_path: Path, name: str, **options) -> Path:
    """Screenshot ``page`` (or a locator) to ``tmp_path/screenshots/<name>.png`` and copy it to test-artifacts/."""
    path = tmp_path / "screenshots" / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), **options)
    SCREENSHOT_COPIES.mkdir(exist_ok=True)
    shutil.copy2(path, SCREENSHOT_COPIES / path.name)
    return path
