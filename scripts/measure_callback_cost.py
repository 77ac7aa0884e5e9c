"""What XentMonitor adds to the default ``xent-train`` run, measured as whole processes, side by side.

    .venv/bin/python scripts/measure_callback_cost.py --rounds 5

Each round runs the default run (MLP on digits, 20 epochs, then test) three times, in a rotating order, each
from a fresh directory: without XentMonitor (``callbacks.xent_monitor=null``), with it and its figures, and with
it but ``log_figures=false``. It prints each variant's median wall and CPU (user + system) seconds and the
median of the per-round ratios against the run without the callback: pairing within a round keeps the ratio
honest while a shared machine's speed drifts. Extra overrides after ``--`` go to every run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

XENT_TRAIN = Path(sys.executable).with_name("xent-train")
# The checkpoint watches the model's own loss in every variant, as the run without XentMonitor has no
# val/cross_entropy; no progress bar, whose redraws would be timed too.
COMMON = ("callbacks.model_checkpoint.monitor=val/loss", "trainer.enable_progress_bar=false")
VARIANTS = {
    "without XentMonitor": ["callbacks.xent_monitor=null"],
    "XentMonitor, figures on": [],
    "XentMonitor, figures off": ["callbacks.xent_monitor.log_figures=false"],
}


def run_once(overrides: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the run and its children) of one run in an empty temporary directory."""
    with tempfile.TemporaryDirectory() as directory:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.monotonic()
        subprocess.run(
            [str(XENT_TRAIN), "hydra.run.dir=run", *COMMON, *overrides],
            cwd=directory,
            capture_output=True,
            check=True,
        )
        wall_s = time.monotonic() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall_s, cpu_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5, help="counted rounds (one warm-up round comes first)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("overrides", nargs="*", help="overrides for every run, after --")
    arguments = parser.parse_args()
    print(f"{os.cpu_count()} CPU cores; load average {os.getloadavg()[0]:.1f}")
    names = list(VARIANTS)
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
    for round_index in range(arguments.rounds + 1):
        order = names[round_index % len(names) :] + names[: round_index % len(names)]
        measured = {name: run_once(VARIANTS[name] + arguments.overrides) for name in order}
        if round_index == 0:
            continue  # warm-up: page cache, compiled bytecode
        for name in names:
            times[name].append(measured[name])
        print(f"round {round_index}: " + ", ".join(f"{name} {measured[name][0]:.1f} s" for name in names))
    baseline = times[names[0]]
    report = {}
    for name in names:
        wall = [wall for wall, _ in times[name]]
        ratio = [wall / base for (wall, _), (base, _) in zip(times[name], baseline, strict=True)]
        report[name] = {
            "wall_s_median": statistics.median(wall),
            "cpu_s_median": statistics.median(cpu for _, cpu in times[name]),
            "wall_ratio_median": statistics.median(ratio),
            "wall_ratio_min": min(ratio),
            "wall_ratio_max": max(ratio),
        }
        print(
            f"{name:28s} wall {report[name]['wall_s_median']:5.1f} s  cpu {report[name]['cpu_s_median']:5.1f} s  "
            f"wall ratio {report[name]['wall_ratio_median']:.3f} ({min(ratio):.3f}-{max(ratio):.3f})"
        )
    if arguments.json:
        arguments.json.write_text(json.dumps({"rounds": arguments.rounds, "variants": report}, indent=2))


if __name__ == "__main__":
    main()
