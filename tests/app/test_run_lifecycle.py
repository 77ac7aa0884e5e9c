"""How a ``xent-train`` process ends when something outside it intervenes: a signal, or a second run beside it.

Real ``xent-train`` subprocesses, all started together by one module fixture (each spends most of its time
importing torch, Lightning and MLflow):

- ``SIGTERM`` mid-run, ``SIGTERM`` as ``fit`` ends, and ``SIGHUP`` mid-run, each sent to the process by itself
  from a callback (a real signal, as ``kill`` or a closing terminal sends it), each from its own directory;
- two plain runs started at the same moment from one empty directory.
"""

from __future__ import annotations

import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from tests.app.xent_train_runs import FEW_BATCHES, finish, output_tail, runs_in, sqlite_uri, start_xent_train

pytestmark = pytest.mark.slow

CALLBACKS = "tests.app.failing_callbacks"
SIGNALLED = {
    "sigterm_mid_run": (
        "SIGTERM",
        [f"+callbacks.stop._target_={CALLBACKS}.SignalAtEpochStart", "+callbacks.stop.epoch=1"],
    ),
    "sigterm_at_fit_end": ("SIGTERM", [f"+callbacks.stop._target_={CALLBACKS}.SignalAtFitEnd"]),
    "sighup_mid_run": (
        "SIGHUP",
        [f"+callbacks.stop._target_={CALLBACKS}.SignalAtEpochStart", "+callbacks.stop.epoch=1"],
    ),
}
# Three epochs, so a signal at the start of epoch 1 lands mid-run.
EPOCHS = ("trainer.max_epochs=3", *FEW_BATCHES[1:])


@dataclass
class Ended:
    cwd: Path
    result: subprocess.CompletedProcess

    def runs(self) -> list[Run]:
        return runs_in(MlflowClient(sqlite_uri(self.cwd)))


@pytest.fixture(scope="module")
def ended(tmp_path_factory) -> dict[str, Ended]:
    root = tmp_path_factory.mktemp("lifecycle")
    started = {}
    for case, (name, callback) in SIGNALLED.items():
        cwd = root / case
        cwd.mkdir()
        started[case] = (cwd, start_xent_train(cwd, *EPOCHS, *callback, f"+callbacks.stop.name={name}"))
    together = root / "together"
    together.mkdir()
    for index in range(2):
        started[f"together_{index}"] = (together, start_xent_train(together, *FEW_BATCHES))
    return {case: Ended(cwd, finish(process)) for case, (cwd, process) in started.items()}


@pytest.mark.parametrize("case", sorted(SIGNALLED))
def test_a_signal_marks_the_run_killed_with_an_end_time_and_exits_128_plus_its_number(ended, case):
    name = SIGNALLED[case][0]
    outcome = ended[case]

    (run,) = outcome.runs()

    assert outcome.result.returncode == 128 + signal.Signals[name], output_tail(outcome.result)
    assert f"xent-train: stopped by {name}; exit status {128 + signal.Signals[name]}." in outcome.result.stderr
    assert run.info.status == "KILLED"
    assert run.info.end_time is not None and run.info.end_time >= run.info.start_time


def test_a_run_stopped_mid_run_keeps_the_epochs_it_completed(ended):
    (run,) = ended["sigterm_mid_run"].runs()

    history = MlflowClient(sqlite_uri(ended["sigterm_mid_run"].cwd)).get_metric_history(
        run.info.run_id, "val/cross_entropy"
    )

    assert len(history) == 1  # epoch 0; the signal came as epoch 1 started


def test_two_runs_started_together_in_an_empty_directory_both_finish_in_their_own_output_directories(ended):
    results = [ended[f"together_{index}"].result for index in range(2)]
    cwd = ended["together_0"].cwd

    runs = ended["together_0"].runs()

    assert [result.returncode for result in results] == [0, 0], "\n".join(map(output_tail, results))
    assert sorted(run.info.status for run in runs) == ["FINISHED", "FINISHED"]
    assert all("val/cross_entropy" in run.data.metrics and "test/cross_entropy" in run.data.metrics for run in runs)
    output_dirs = sorted(path.parent for path in (cwd / "outputs").rglob(".hydra"))
    assert len(output_dirs) == 2
    assert all(list((directory / "checkpoints").glob("*.ckpt")) for directory in output_dirs)
