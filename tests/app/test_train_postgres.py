"""A sweep of ``xent-train`` logs into ``mlflow server`` over a real PostgreSQL, Debian's package.

The test starts its own PostgreSQL cluster (``initdb`` + ``pg_ctl``, on 127.0.0.1 and a free port, in a fresh
directory, as the ``postgres`` user when run as root, since PostgreSQL refuses to run as root) and a
``mlflow server --backend-store-uri postgresql://...`` over it. ``make postgres`` installs the package with
apt where it may; without it the test skips, unless ``XENT_REQUIRE_POSTGRES=1`` (CI) makes that a failure.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.app.conftest import _free_port, serve_mlflow
from tests.app.xent_train_runs import FEW_BATCHES, run_xent_train, runs_in

pytestmark = pytest.mark.slow

REQUIRE_ENV = "XENT_REQUIRE_POSTGRES"


def _postgres_binaries() -> Path | None:
    """The directory of Debian's ``initdb``/``pg_ctl`` (not on PATH there), newest version first."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    found = shutil.which("initdb")
    path = candidates[0] if candidates else found
    return Path(path).parent if path else None


def _as_cluster_owner() -> list[str]:
    """A prefix that runs a command as a user PostgreSQL accepts: ``postgres`` when this process is root."""
    if os.getuid() != 0:
        return []
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("running as root without a `postgres` user to own the cluster")
    return ["runuser", "-u", "postgres", "--"]


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL server of its own on 127.0.0.1 with an empty database ``mlflow``; yields its URL."""
    binaries = _postgres_binaries()
    if binaries is None or shutil.which("psql") is None:
        message = "Debian's postgresql is not installed (`make postgres` installs it with apt when run as root)"
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{message}, and {REQUIRE_ENV}=1 requires the PostgreSQL test to run.")
        pytest.skip(f"{message}. Set {REQUIRE_ENV}=1 to make this a failure.")
    owner = _as_cluster_owner()
    # Not under pytest's tmp dir, whose parents only root may enter.
    root = Path(tempfile.mkdtemp(prefix="xent-postgres-"))
    data = root / "data"
    if owner:
        shutil.chown(root, user="postgres")
    port = _free_port()
    subprocess.run(
        [*owner, str(binaries / "initdb"), "-D", str(data), "-U", "xent", "--auth=trust", "--no-sync"],
        check=True,
        capture_output=True,
    )
    options = f"-h 127.0.0.1 -p {port} -k {root} -F"
    start = [*owner, str(binaries / "pg_ctl"), "-D", str(data), "-l", str(root / "server.log"), "-o", options]
    subprocess.run([*start, "-w", "start"], check=True, capture_output=True)
    try:
        subprocess.run(
            [
                "psql",
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-U",
                "xent",
                "-d",
                "postgres",
                "-c",
                "CREATE DATABASE mlflow",
            ],
            check=True,
            capture_output=True,
        )
        yield f"postgresql://xent@127.0.0.1:{port}/mlflow"
    finally:
        subprocess.run([*owner, str(binaries / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"], check=False)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def postgres_mlflow_server(postgres_url, tmp_path_factory) -> Iterator[str]:
    # SQLAlchemy's default PostgreSQL driver is psycopg 3; name psycopg2, which the dev extra installs.
    backend = postgres_url.replace("postgresql://", "postgresql+psycopg2://", 1)
    yield from serve_mlflow(tmp_path_factory.mktemp("postgres-server"), backend)


def test_a_sweep_of_two_jobs_logs_both_runs_through_the_server_into_postgresql(
    postgres_url, postgres_mlflow_server, tmp_path
):
    import psycopg2

    run_xent_train(
        tmp_path,
        "-m",
        "model=logreg,mlp",
        f"logger.tracking_uri={postgres_mlflow_server}",
        *FEW_BATCHES,
        f"hydra.sweep.dir={tmp_path / 'multirun'}",
    )

    runs = runs_in(MlflowClient(postgres_mlflow_server))
    assert sorted(run.data.params["model.net._target_"] for run in runs) == [
        "xent_plugin.app.models.LogisticRegression",
        "xent_plugin.app.models.MLP",
    ]
    assert [run.info.status for run in runs] == ["FINISHED", "FINISHED"]
    assert all({"val/cross_entropy", "test/cross_entropy"} <= set(run.data.metrics) for run in runs)
    with psycopg2.connect(postgres_url) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT run_uuid, status FROM runs")
        stored = dict(cursor.fetchall())
    assert stored == {run.info.run_id: "FINISHED" for run in runs}
