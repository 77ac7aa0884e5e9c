"""Time the default ``xent-train`` run from a fresh directory and report its test accuracy: the README's figure.

    .venv/bin/python scripts/measure_default_run.py            # once
    .venv/bin/python scripts/measure_default_run.py --repeat 3

The wall time includes starting Python and importing torch, Lightning and MLflow, as a user would see it.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mlflow.tracking import MlflowClient

XENT_TRAIN = Path(sys.executable).with_name("xent-train")
SUMMARY = re.compile(r"MLflow run (\w+) in experiment .*--backend-store-uri (\S+)")


def measure_once() -> tuple[float, float]:
    """(test accuracy, wall seconds) of one default run in an empty temporary directory."""
    with tempfile.TemporaryDirectory() as directory:
        started = time.monotonic()
        result = subprocess.run(
            [str(XENT_TRAIN), "hydra.run.dir=run"], cwd=directory, capture_output=True, text=True, check=True
        )
        wall_s = time.monotonic() - started
        run_id, tracking_uri = SUMMARY.search(result.stdout + result.stderr).groups()
        accuracy = MlflowClient(tracking_uri).get_run(run_id).data.metrics["test/accuracy"]
    return accuracy, wall_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=1, help="number of runs")
    arguments = parser.parse_args()
    print(f"{os.cpu_count()} CPU cores; load average {os.getloadavg()[0]:.1f}")
    for index in range(arguments.repeat):
        accuracy, wall_s = measure_once()
        print(f"run {index + 1}: test/accuracy={accuracy:.4f}, wall time {wall_s:.1f} s")


if __name__ == "__main__":
    main()
