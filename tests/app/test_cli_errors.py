"""A bad override stops ``xent-train`` at start with one line that names it and says what is expected.

The messages are checked through the Python API (``train(compose_config([...]))`` raises a ``ConfigError`` whose
``problems`` are the lines the command line prints); two real ``xent-train`` runs check the printing: one line
on stderr and no traceback, unless ``HYDRA_FULL_ERROR=1`` asks for one.
"""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from tests.app.xent_train_runs import finish, runs_in, sqlite_uri, start_xent_train
from xent_plugin.app.config import compose_config
from xent_plugin.app.config_validation import ConfigError
from xent_plugin.app.train import train

# override(s) -> the start of the one line that must name it
REFUSED = {
    ("cpu_threads=0",): "cpu_threads=0: expected an integer >= 1, or null for torch's default.",
    ("model.optimizer.lr=-0.1",): "model.optimizer.lr=-0.1: torch.optim.Adam refused it: Invalid learning rate: -0.1",
    ("model.optimizer.weight_decay=-1",): "model.optimizer.weight_decay=-1: torch.optim.Adam refused it: Invalid",
    ("model.net.input_dim=32",): "model.net.input_dim=32: expected 64, the data.inputs.features of data=digits;",
    ("model.net.num_classes=5",): "model.net.num_classes=5: expected 10, the data.num_classes of data=digits;",
    ("model=cnn", "model.net.in_channels=3"): "model.net.in_channels=3: expected 1, the data.inputs.image.channels of",
    ("callbacks.xent_monitor.task=binary",): "callbacks.xent_monitor.task=binary: expected 'multiclass', the data.task",
    ("callbacks.xent_monitor.class_dim=-1",): "callbacks.xent_monitor.class_dim=-1: expected 1, the data.class_dim",
    ("data=synthetic", "data.datamodule.num_classes=6"): "data.datamodule.num_classes=6: expected 4, the data.num_cl",
    ("data.num_classes=5",): "data.num_classes=5: expected 10, the num_classes of the DigitsDataModule that",
    ("trainer.accelerator=tpu",): "trainer.accelerator=tpu: not available on this machine; expected one of [",
    ("trainer.accelerator=abacus",): "trainer.accelerator=abacus: pytorch_lightning.Trainer refused it: You selected",
    ("trainer.devices=two",): "trainer.devices=two: pytorch_lightning.Trainer refused it: `devices` selected with "
    "`CPUAccelerator` should be an int > 0.",
    ("data.datamodule.batch_size=0",): "data.datamodule.batch_size=0: xent_plugin.app.data.DigitsDataModule refused",
    ("model.net.dropout=1.5",): "model.net.dropout=1.5: xent_plugin.app.models.MLP refused it: `dropout` must be in",
}


def compose(tmp_path, *overrides: str):
    return compose_config([*overrides, f"paths.work_dir={tmp_path}"], output_dir=tmp_path / "run")


@pytest.mark.parametrize("overrides", sorted(REFUSED), ids=lambda overrides: " ".join(overrides))
def test_a_bad_override_is_refused_at_start_with_one_line_naming_it(tmp_path, overrides):
    with pytest.raises(ConfigError) as refusal:
        train(compose(tmp_path, *overrides))

    (problem,) = refusal.value.problems
    assert problem.startswith(REFUSED[overrides])
    assert "\n" not in problem


def test_resuming_a_run_that_does_not_exist_is_refused_naming_the_id_and_the_store(tmp_path):
    run_id = "0123456789abcdef0123456789abcdef"

    with pytest.raises(ConfigError) as refusal:
        train(compose(tmp_path, f"logger.run_id={run_id}"))

    assert refusal.value.problems == [
        f"logger.run_id={run_id}: no run with this id in {sqlite_uri(tmp_path)}; expected the id of a run in that "
        "store (as printed when it started), or no logger.run_id to start a new run."
    ]
    assert runs_in(MlflowClient(sqlite_uri(tmp_path))) == []


@pytest.mark.slow
def test_the_command_line_prints_one_line_and_a_traceback_only_with_hydra_full_error(tmp_path):
    plain, full = tmp_path / "plain", tmp_path / "full"
    plain.mkdir()
    full.mkdir()
    started = [
        start_xent_train(plain, "model.net.input_dim=32"),
        start_xent_train(full, "model.net.input_dim=32", env={"HYDRA_FULL_ERROR": "1"}),
    ]

    plain_result, full_result = (finish(process) for process in started)

    assert plain_result.returncode == 1
    assert plain_result.stderr.strip().splitlines() == [
        f"xent-train: {REFUSED[('model.net.input_dim=32',)]}"
        " this value follows the data, so leave model.net.input_dim out (or change data.inputs.features where the "
        "data allows)."
    ]
    assert full_result.returncode == 1
    assert "Traceback (most recent call last)" in full_result.stderr
    assert "ConfigError" in full_result.stderr
