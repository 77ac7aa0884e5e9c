"""Opening a local SQLite MLflow store safely when several processes open it for the first time at once."""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

from filelock import FileLock
from mlflow.tracking import MlflowClient

_SQLITE = "sqlite:///"
_opened: set[str] = set()


def open_store_safely(tracking_uri: str) -> None:
    """Opens the store at ``tracking_uri`` once per process, under a file lock beside it for ``sqlite:///`` files.

    MLflow creates a new SQLite store's tables, and migrates an old one's, when a process first connects; two
    processes doing that at once fail with ``table alembic_version already exists`` or ``duplicate column name``.
    Under the lock the first process creates the tables and the next finds them. The lock file lives in the
    system's temporary directory, named after the database's path, so the user's directory holds only the store.
    Other stores (a tracking server, a database server) do this on their side, and are left alone.

    Example:
        >>> with tempfile.TemporaryDirectory() as directory:
        ...     open_store_safely(f"sqlite:///{directory}/mlflow.db")
        ...     sorted(path.name for path in Path(directory).iterdir())
        ['mlflow.db']
    """
    if tracking_uri in _opened or not tracking_uri.startswith(_SQLITE) or tracking_uri.endswith(":memory:"):
        return
    database = Path(tracking_uri[len(_SQLITE) :])
    database.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha1(str(database.resolve()).encode()).hexdigest()[:16]
    with FileLock(Path(tempfile.gettempdir()) / f"xent-mlflow-store-{digest}.lock"):
        # Any read makes MLflow build (and cache, per process) the store, creating or migrating its tables.
        MlflowClient(tracking_uri).search_experiments(max_results=1)
    _opened.add(tracking_uri)
