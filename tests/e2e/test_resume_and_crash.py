"""``xent-train`` against a real tracking server: Ctrl-C then resume continues one run; a crash marks it FAILED.

- Resume. A first leg of 4 epochs is stopped by Ctrl-C (a real SIGINT, from :mod:`tests.e2e.plugins`) after
  epoch 1, then resumed with ``xent-train ckpt_path=<first leg>/checkpoints/last.ckpt logger.run_id=<its run>``,
  as the ``xent-train`` docstring says. Two moments for the Ctrl-C:

  - ``between_epochs``: as epoch 2 starts, so epoch 1 is complete, checkpoint included;
  - ``while_epoch_ends``: after epoch 1's validation was logged, before its checkpoint was written (Lightning
    saves in ``on_train_epoch_end`` of ``ModelCheckpoint``, after the other callbacks).

- Crash: :class:`tests.e2e.plugins.CrashAtEpoch` raises at the start of epoch 1.

The first legs and the crash run at the same time, then both resumes, to keep the module's wall time down.
"""

from __future__ import annotations

import itertools
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from tests.e2e.conftest import FAST, epoch_at_step, finish, image_steps, output_tail, start_xent_train

pytestmark = pytest.mark.slow

EPOCHS = 4
TRAIN_BATCHES = 2  # FAST's trainer.limit_train_batches
INTERRUPTS = {
    "between_epochs": [
        "+callbacks.interrupt._target_=tests.e2e.plugins.InterruptAtEpochStart",
        "+callbacks.interrupt.epoch=2",
    ],
    "while_epoch_ends": [
        "+callbacks.interrupt._target_=tests.e2e.plugins.InterruptAtEpochEnd",
        "+callbacks.interrupt.epoch=1",
    ],
}


@dataclass
class Resumed:
    first_leg: subprocess.CompletedProcess
    first_leg_checkpoint: Path
    second_leg: subprocess.CompletedProcess
    run: Run


@dataclass
class Outcomes:
    client: MlflowClient
    resumed: dict[str, Resumed]
    crash: subprocess.CompletedProcess
    crashed_run: Run


@pytest.fixture(scope="module")
def outcomes(tracking_server, tmp_path_factory) -> Outcomes:
    cwd = tmp_path_factory.mktemp("resume")
    common = [
        f"logger.tracking_uri={tracking_server.url}",
        f"trainer.max_epochs={EPOCHS}",
        # a diagram every epoch, so that each epoch's can be checked across the resume
        "callbacks.xent_monitor.figures_every_n_epochs=1",
        *FAST,
    ]
    first_legs = {
        name: start_xent_train(
            cwd, [*common, f"logger.experiment_name=e2e-resume-{name}", f"hydra.run.dir={cwd / name / 'first'}", *plug]
        )
        for name, plug in INTERRUPTS.items()
    }
    crash = start_xent_train(
        cwd,
        [
            *common,
            "logger.experiment_name=e2e-crash",
            f"hydra.run.dir={cwd / 'crash'}",
            "+callbacks.crash._target_=tests.e2e.plugins.CrashAtEpoch",
            "+callbacks.crash.epoch=1",
        ],
    )
    first_legs = {name: finish(process) for name, process in first_legs.items()}
    crash = finish(crash)
    client = MlflowClient(tracking_server.url)
    second_legs = {}
    for name in INTERRUPTS:
        (interrupted,) = _runs_in(client, f"e2e-resume-{name}")
        second_legs[name] = start_xent_train(
            cwd,
            [
                *common,
                f"logger.experiment_name=e2e-resume-{name}",
                f"hydra.run.dir={cwd / name / 'second'}",
                f"ckpt_path={cwd / name / 'first' / 'checkpoints' / 'last.ckpt'}",
                f"logger.run_id={interrupted.info.run_id}",
            ],
        )
    resumed = {
        name: Resumed(
            first_leg=first_legs[name],
            first_leg_checkpoint=cwd / name / "first" / "checkpoints" / "last.ckpt",
            second_leg=finish(process),
            run=_runs_in(client, f"e2e-resume-{name}")[0],
        )
        for name, process in second_legs.items()
    }
    (crashed_run,) = _runs_in(client, "e2e-crash")
    return Outcomes(client, resumed, crash, crashed_run)


def test_ctrl_c_between_epochs_stops_the_run_with_the_last_complete_epoch_checkpointed(outcomes):
    resumed = outcomes.resumed["between_epochs"]
    checkpoint = torch.load(resumed.first_leg_checkpoint, weights_only=False)

    assert resumed.first_leg.returncode != 0, output_tail(resumed.first_leg)
    assert "KeyboardInterrupt" in resumed.first_leg.stdout + resumed.first_leg.stderr
    assert checkpoint["epoch"] == 1


def test_the_resume_continues_the_same_mlflow_run_to_the_end(outcomes):
    resumed = outcomes.resumed["between_epochs"]

    assert resumed.second_leg.returncode == 0, output_tail(resumed.second_leg)
    assert f"MLflow run {resumed.run.info.run_id}" in resumed.second_leg.stdout + resumed.second_leg.stderr
    assert len(_runs_in(outcomes.client, "e2e-resume-between_epochs")) == 1
    assert resumed.run.info.status == "FINISHED"


def test_the_resume_keeps_both_configs_and_warns_about_params_mlflow_cannot_change(outcomes):
    resumed = outcomes.resumed["between_epochs"]
    artifacts = {item.path for item in outcomes.client.list_artifacts(resumed.run.info.run_id)}

    assert {"config.yaml", "config_resume_1.yaml"} <= artifacts
    assert f"run {resumed.run.info.run_id} already has params" in resumed.second_leg.stderr
    assert "ckpt_path" in resumed.second_leg.stderr


@pytest.mark.parametrize("key", ["val/cross_entropy", "val/ece", "val/loss"])
def test_after_a_resume_each_series_has_one_point_per_epoch_and_no_gaps(outcomes, key):
    epochs, steps = _series(outcomes.client, outcomes.resumed["between_epochs"].run, key)

    assert epochs == list(range(EPOCHS))
    # One validation per epoch of TRAIN_BATCHES optimizer steps: evenly spaced steps.
    assert [later - earlier for earlier, later in itertools.pairwise(steps)] == [TRAIN_BATCHES] * (EPOCHS - 1)


def test_after_a_resume_there_is_one_reliability_diagram_per_epoch(outcomes):
    run = outcomes.resumed["between_epochs"].run

    _, steps = _series(outcomes.client, run, "val/cross_entropy")
    assert image_steps(outcomes.client, run.info.run_id) == steps
    assert len(steps) == EPOCHS


def test_after_ctrl_c_while_an_epoch_ends_the_resumed_series_has_no_duplicates(outcomes):
    resumed = outcomes.resumed["while_epoch_ends"]
    epochs, steps = _series(outcomes.client, resumed.run, "val/cross_entropy")

    assert resumed.second_leg.returncode == 0, output_tail(resumed.second_leg)
    assert epochs == list(range(EPOCHS))
    assert image_steps(outcomes.client, resumed.run.info.run_id) == steps
    assert f"run {resumed.run.info.run_id} had them before this logger continued it" in resumed.second_leg.stderr


@pytest.mark.parametrize("interrupt", INTERRUPTS)
def test_after_a_resume_no_series_has_two_points_at_one_step(outcomes, interrupt):
    run = outcomes.resumed[interrupt].run
    # Lightning logs "epoch" beside every other key, so it has a point per logging call, some at one step.
    keys = [key for key in run.data.metrics if key != "epoch"]
    repeated = {}
    for key in keys:
        steps = [point.step for point in outcomes.client.get_metric_history(run.info.run_id, key)]
        if len(steps) != len(set(steps)):
            repeated[key] = sorted(steps)

    assert len(keys) > 10
    assert repeated == {}


def test_a_crash_exits_non_zero_and_says_why_on_stderr(outcomes):
    assert outcomes.crash.returncode != 0
    assert "CrashAtEpoch: a deliberate crash at the start of epoch 1" in outcomes.crash.stderr


def test_a_crash_marks_the_run_failed_on_the_tracking_server(outcomes):
    assert outcomes.crashed_run.info.status == "FAILED"
    assert outcomes.crashed_run.info.end_time is not None


def _runs_in(client: MlflowClient, experiment_name: str) -> list[Run]:
    experiment = client.get_experiment_by_name(experiment_name)
    return client.search_runs([experiment.experiment_id]) if experiment else []


def _series(client: MlflowClient, run: Run, key: str) -> tuple[list[int], list[int]]:
    """The epochs and the steps of a metric's points, in step order."""
    steps = sorted(point.step for point in client.get_metric_history(run.info.run_id, key))
    epochs = epoch_at_step(client, run.info.run_id)
    return [epochs[step] for step in steps], steps
