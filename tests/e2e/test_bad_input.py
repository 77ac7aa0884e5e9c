"""Bad input, from the command line and from the Python API: each must stop with a message that names it.

Every case runs twice: as ``xent-train <overrides>`` in a subprocess (non-zero exit, the message on stderr)
and as ``train(compose_config(<overrides>))`` in this process (the exception's type and message). Model-side
mistakes come from a user's own LightningModule plugged in with ``model._target_=tests.e2e.plugins.<Model>``.
The command-line runs start together in a module fixture, a few at a time, because each one spends most of
its time importing torch, Lightning and MLflow.
"""

from __future__ import annotations

import subprocess
import time
import warnings
from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException
from mlflow.tracking import MlflowClient

from tests.e2e.conftest import epoch_at_step, finish, output_tail, start_xent_train
from xent_plugin.app.config import compose_config
from xent_plugin.app.config_validation import ConfigError
from xent_plugin.app.train import train

pytestmark = pytest.mark.slow

# Two short epochs with three validation batches: the NaN model breaks validation batch 1 of epoch 1.
SHORT = (
    "trainer.max_epochs=2",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=3",
    "trainer.enable_progress_bar=false",
    "test=false",
)
PLUGINS = "tests.e2e.plugins"
CASES = {
    "unknown_model": ["model=nope"],
    "wrong_type_in_schema": ["seed=abc"],
    "wrong_type_for_target": ["model.optimizer.lr=fast"],
    "no_logits": [f"model._target_={PLUGINS}.LogitlessClassifier"],
    "nan_logits": [f"model._target_={PLUGINS}.NaNLogitsClassifier"],
    "nan_logits_warn": [f"model._target_={PLUGINS}.NaNLogitsClassifier", "callbacks.xent_monitor.nan_policy=warn"],
    "targets_out_of_range": [f"model._target_={PLUGINS}.ShiftedTargetClassifier"],
    "mismatched_shapes": [f"model._target_={PLUGINS}.TruncatedLogitsClassifier"],
    "empty_validation_set": ["data.datamodule.val_fraction=0"],
}
CONCURRENT_RUNS = 3

NO_LOGITS = "the validate step returned keys ['loss', 'target']; expected one of ['log_probs', 'logits', 'probs']"
NAN_AT_BATCH_1 = "validate batch 1 (dataloader 0): `preds` contains NaN (logits)"
OUT_OF_RANGE = "validate batch 0 (dataloader 0): `target` holds class index 19, outside [0, 9] for 10 classes"
SHAPES = "`target` of shape (64,) does not match `preds` of shape (63, 10)"
WRONG_LR = (
    "model.optimizer.lr=fast: torch.optim.Adam refused it: '<=' not supported between instances of 'float' and 'str'"
)
# digits has 1797 rows; the schema types val_fraction as a float, so the override 0 arrives as 0.0
EMPTY_VALIDATION = "1797 rows with `val_fraction`=0.0 leave an empty validation split; raise `val_fraction`"
BAD_PREDICTIONS = [
    ("no_logits", NO_LOGITS),
    ("nan_logits", NAN_AT_BATCH_1),
    ("targets_out_of_range", OUT_OF_RANGE),
    ("mismatched_shapes", SHAPES),
]


# ---- the command line ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cli(tmp_path_factory) -> dict[str, tuple[Path, subprocess.CompletedProcess]]:
    """``xent-train <case> <SHORT>`` for every case, each from its own empty directory."""
    root = tmp_path_factory.mktemp("bad-input-cli")
    pending = list(CASES.items())
    running: dict[str, tuple[Path, subprocess.Popen]] = {}
    results = {}
    deadline = time.monotonic() + 900
    while pending or running:
        while pending and len(running) < CONCURRENT_RUNS:
            name, overrides = pending.pop(0)
            (root / name).mkdir()
            running[name] = (root / name, start_xent_train(root / name, [*overrides, *SHORT]))
        for name, (cwd, process) in list(running.items()):
            if process.poll() is not None or time.monotonic() > deadline:
                results[name] = (cwd, finish(process, timeout=1))
                del running[name]
        time.sleep(0.2)
    return results


def test_cli_unknown_model_exits_non_zero_listing_the_models(cli):
    _, result = cli["unknown_model"]

    assert result.returncode != 0
    assert "Could not find 'model/nope'" in result.stderr
    assert "Available options in 'model':\n\tcnn\n\tgru\n\tlogreg\n\tmlp\n\ttransformer" in result.stderr


def test_cli_wrong_type_in_the_schema_names_the_key_and_the_value(cli):
    _, result = cli["wrong_type_in_schema"]

    assert result.returncode != 0
    assert "Value 'abc' of type 'str' could not be converted to Integer" in result.stderr
    assert "full_key: seed" in result.stderr


def test_cli_wrong_type_for_a_target_argument_exits_non_zero_naming_it_on_stderr(cli):
    _, result = cli["wrong_type_for_target"]

    assert result.returncode != 0
    assert f"xent-train: {WRONG_LR}" in result.stderr


@pytest.mark.parametrize(
    ("case", "message"),
    BAD_PREDICTIONS,
    ids=[case for case, _ in BAD_PREDICTIONS],
)
def test_cli_bad_predictions_exit_non_zero_with_the_message_on_stderr_and_a_failed_run(cli, case, message):
    cwd, result = cli[case]

    assert result.returncode != 0
    assert "ValueError: XentMonitor: " in result.stderr, output_tail(result)
    assert message in result.stderr
    assert [run.info.status for run in _local_runs(cwd)] == ["FAILED"]


def test_cli_nan_logits_with_nan_policy_warn_skip_and_count_the_batch(cli):
    cwd, result = cli["nan_logits_warn"]
    (run,) = _local_runs(cwd)
    client = MlflowClient(f"sqlite:///{cwd / 'mlflow.db'}")
    epochs = epoch_at_step(client, run.info.run_id)
    skipped = client.get_metric_history(run.info.run_id, "val/skipped_batches")

    assert result.returncode == 0, output_tail(result)
    assert f"XentMonitor: skipped {NAN_AT_BATCH_1}" in result.stderr
    assert [(epochs[point.step], point.value) for point in skipped] == [(1, 1.0)]
    assert len(client.get_metric_history(run.info.run_id, "val/cross_entropy")) == 2
    assert run.info.status == "FINISHED"


def test_cli_empty_validation_set_is_refused_naming_val_fraction(cli):
    cwd, result = cli["empty_validation_set"]

    assert result.returncode != 0
    assert f"ValueError: {EMPTY_VALIDATION}" in result.stderr
    assert [run.info.status for run in _local_runs(cwd)] == ["FAILED"]


# ---- the Python API ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def work_dir(tmp_path_factory) -> Path:
    """One MLflow database for every API case: creating a SQLite store takes seconds."""
    return tmp_path_factory.mktemp("bad-input-api")


def compose(work_dir: Path, *overrides: str):
    # cpu_threads=null: leave this pytest process's torch threads alone.
    return compose_config(
        [*overrides, *SHORT, "cpu_threads=null", f"paths.work_dir={work_dir}"], output_dir=work_dir / "run"
    )


@pytest.mark.parametrize("group", ["model", "data"])
def test_api_unknown_option_raises_listing_the_options(work_dir, group):
    with pytest.raises(ConfigCompositionException) as error:
        compose(work_dir, f"{group}=nope")

    assert f"Could not find '{group}/nope'" in str(error.value)
    assert f"Available options in '{group}':" in str(error.value)


def test_api_wrong_type_in_the_schema_raises_naming_the_override(work_dir):
    with pytest.raises(ConfigCompositionException, match="Error merging override seed=abc") as error:
        compose(work_dir, "seed=abc")

    assert "Value 'abc' of type 'str' could not be converted to Integer" in str(error.value.__cause__)


def test_api_wrong_type_for_a_target_argument_raises_config_error(work_dir):
    with pytest.raises(ConfigError) as error:
        train(compose(work_dir, "model.optimizer.lr=fast"))

    assert error.value.problems == [WRONG_LR]


@pytest.mark.parametrize(
    ("case", "message"),
    BAD_PREDICTIONS,
    ids=[case for case, _ in BAD_PREDICTIONS],
)
def test_api_bad_predictions_raise_value_error_and_fail_the_run(work_dir, case, message):
    with pytest.raises(ValueError) as error:
        train(compose(work_dir, *CASES[case]))

    assert str(error.value).startswith("XentMonitor: ")
    assert message in str(error.value)
    assert _local_runs(work_dir)[0].info.status == "FAILED"  # the newest run


def test_api_nan_logits_with_nan_policy_warn_skip_and_count_the_batch(work_dir):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = train(compose(work_dir, *CASES["nan_logits_warn"]))

    assert result.metrics["val/skipped_batches"] == 1.0
    assert any(f"XentMonitor: skipped {NAN_AT_BATCH_1}" in str(warning.message) for warning in caught)


def test_api_empty_validation_set_raises_value_error_naming_val_fraction(work_dir):
    with pytest.raises(ValueError) as error:
        train(compose(work_dir, *CASES["empty_validation_set"]))

    assert EMPTY_VALIDATION in str(error.value)


def _local_runs(directory: Path) -> list:
    """The runs in the SQLite store ``xent-train`` made in ``directory``, newest first."""
    client = MlflowClient(f"sqlite:///{directory / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("xent")
    return client.search_runs([experiment.experiment_id], order_by=["attributes.start_time DESC"])
