"""Sends a spool file of writes that never reached MLflow into its run (`xent-mlflow-replay <spool>`).

A spool (``mlflow_unsent_<run id>.jsonl``) is written when a run ends with writes its tracking server never took.
Replaying it sends them, in their order, to the run named in its first line (or to ``--run-id``), creating a run
in the spool's experiment if the server was never reached; what the run already has is not sent twice, so a
replay can be repeated. The file is deleted once everything is sent::

    python -m xent_plugin.integrations.mlflow.replay outputs/2026-01-01/12-00-00/mlflow_unsent.jsonl
    python -m xent_plugin.integrations.mlflow.replay spool.jsonl --tracking-uri http://mlflow:5000 --run-id <id>
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from mlflow.tracking import MlflowClient

from xent_plugin.integrations.mlflow.outbox import Outbox, read_spool
from xent_plugin.integrations.mlflow.store import open_store_safely


def replay(
    path: str | Path, *, tracking_uri: str | None = None, run_id: str | None = None, timeout_s: float = 60.0
) -> str:
    """Sends the spool at ``path`` to its run and returns the run id; raises ``RuntimeError`` naming what is left
    if the server does not take everything (the file then holds what is left).

    Example:
        >>> import tempfile, json
        >>> with tempfile.TemporaryDirectory() as directory:
        ...     uri = f"sqlite:///{directory}/mlflow.db"
        ...     path = Path(directory) / "spool.jsonl"
        ...     _ = path.write_text("\\n".join(json.dumps(line) for line in [
        ...         {"kind": "run", "format": 1, "tracking_uri": uri, "run_id": None, "experiment_name": "late"},
        ...         {"kind": "metric", "key": "val/ece", "value": 0.1, "timestamp": 1, "step": 0}]))
        ...     run_id = replay(path)
        ...     [point.value for point in MlflowClient(uri).get_metric_history(run_id, "val/ece")], path.exists()
        ([0.1], False)
    """
    path = Path(path)
    header, _ = read_spool(path)
    tracking_uri = tracking_uri or header.get("tracking_uri")
    run_id = run_id or header.get("run_id")
    if not tracking_uri:
        raise ValueError(f"{path} names no tracking URI (a spool from before headers); pass --tracking-uri.")
    experiment_name = header.get("experiment_name") or "Default"

    def open_run() -> tuple[MlflowClient, str]:
        open_store_safely(tracking_uri)
        client = MlflowClient(tracking_uri)
        if run_id is not None:
            return client, client.get_run(run_id).info.run_id
        experiment = client.get_experiment_by_name(experiment_name)
        experiment_id = experiment.experiment_id if experiment else client.create_experiment(experiment_name)
        return client, client.create_run(experiment_id).info.run_id

    outbox = Outbox(
        open_run,
        tracking_uri=tracking_uri,
        source="replay",
        spool_path=path,
        retry_after_s=0,
        max_wait_s=timeout_s,
        experiment_name=experiment_name,
    )
    outbox.resend_spool(path)
    outbox.close(timeout_s)
    if path.exists():
        raise RuntimeError(f"MLflow at {tracking_uri} did not take every write; what is left is in {path}.")
    return outbox.run_id


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m xent_plugin.integrations.mlflow.replay",
        description="Send the writes in an MLflow spool file (mlflow_unsent_*.jsonl) to their run.",
    )
    parser.add_argument("spool", type=Path, help="the spool file a run wrote at its end")
    parser.add_argument("--tracking-uri", help="where to send them (default: the URI the spool names)")
    parser.add_argument("--run-id", help="the run to send them to (default: the spool's run, or a new one)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait without progress (default 60)")
    args = parser.parse_args(argv)
    if not args.spool.is_file():
        parser.error(f"{args.spool}: no such file")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the outcome is reported below, in one line
        try:
            run_id = replay(args.spool, tracking_uri=args.tracking_uri, run_id=args.run_id, timeout_s=args.timeout)
        except (RuntimeError, ValueError) as error:
            print(f"replay: {error}", file=sys.stderr)
            return 1
    print(f"replay: every write in {args.spool} reached MLflow run {run_id}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
