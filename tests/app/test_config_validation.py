"""Keys and types are checked by Hydra while composing (each bundled option extends its class's schema); the
domain checks that remain are the model fitting the data and the strategy fitting the run mode."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
from hydra.errors import ConfigCompositionException
from hydra.types import RunMode

from xent_plugin.app.config import bundled_schemas, compose_config
from xent_plugin.app.config_validation import ConfigError, check_strategy_fits_run_mode
from xent_plugin.app.train import train


def compose(tmp_path, *overrides: str):
    return compose_config([*overrides, f"paths.work_dir={tmp_path}"], output_dir=tmp_path / "run")


@pytest.mark.parametrize(
    ("override", "key", "schema"),
    [
        ("trainer.max_epoch=3", "max_epoch", "Builds_Trainer"),
        ("model.net.input_dimx=3", "input_dimx", "Builds_MLP"),
        ("callbacks.xent_monitor.n_bin=10", "n_bin", "Builds_XentMonitor"),
        ("logger.tracking_url=http://x", "tracking_url", "Builds_ResilientMLFlowLogger"),
        ("data.datamodule.batch=8", "batch", "Builds_DigitsDataModule"),
    ],
)
def test_an_unknown_argument_of_a_bundled_option_fails_while_composing(tmp_path, override, key, schema):
    with pytest.raises(ConfigCompositionException, match=f"Could not override '{override.split('=')[0]}'") as error:
        compose(tmp_path, override)

    assert f"Key '{key}' not in '{schema}'" in str(error.value.__cause__)


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("trainer.max_epochs=abc", "could not be converted to Integer"),
        ("model.net.dropout=high", "could not be converted to Float"),
        ("callbacks.xent_monitor.log_figures=maybe", "is not a valid bool"),
        ("data.datamodule.val_fraction=tenth", "could not be converted to Float"),
    ],
)
def test_an_argument_of_the_wrong_type_fails_while_composing_naming_it(tmp_path, override, expected):
    with pytest.raises(ConfigCompositionException, match=f"Error merging override {override}") as error:
        compose(tmp_path, override)

    assert expected in str(error.value.__cause__)
    assert f"full_key: {override.split('=')[0]}" in str(error.value.__cause__)


def test_every_bundled_schema_holds_its_classs_whole_signature_with_its_defaults():
    schemas = bundled_schemas()

    trainer = schemas["trainer"]()

    assert trainer.max_epochs is None and trainer.num_sanity_val_steps is None  # Lightning's own defaults
    assert {"accelerator", "devices", "strategy", "precision", "gradient_clip_val"} <= set(vars(trainer))
    assert "params" not in vars(schemas["adam"]())  # the model passes its own parameters


def test_the_optimizer_learning_rate_is_checked_before_training(tmp_path):
    with pytest.raises(ConfigError) as error:
        train(compose(tmp_path, "model.optimizer.lr=fast"))

    assert error.value.problems == [
        "model.optimizer.lr=fast: torch.optim.Adam refused it: '<=' not supported between instances of 'float' "
        "and 'str'"
    ]


def test_an_added_argument_the_target_lacks_is_refused_naming_the_override(tmp_path):
    with pytest.raises(ConfigError) as error:
        train(compose(tmp_path, "+trainer.max_epoch=3"))

    assert error.value.problems == [
        "+trainer.max_epoch=3: pytorch_lightning.Trainer refused it: Trainer.__init__() got an unexpected keyword "
        "argument 'max_epoch'"
    ]


def test_a_target_that_cannot_be_imported_is_named(tmp_path):
    with pytest.raises(ConfigError) as error:
        train(compose(tmp_path, "data.datamodule._target_=xent_plugin.app.data.NoSuchData"))

    (problem,) = error.value.problems
    assert problem.startswith("data.task: ImportError raised while resolving interpolation: Error loading")
    assert "xent_plugin.app.data.NoSuchData" in problem


def test_the_class_count_and_task_of_a_fixed_dataset_come_from_its_datamodule_class(tmp_path):
    from xent_plugin.app.data import BreastCancerDataModule

    cfg = compose(tmp_path, "data=breast_cancer", "model=logreg")

    assert (cfg.data.task, cfg.data.num_classes) == (BreastCancerDataModule.task, BreastCancerDataModule.num_classes)


def test_a_strategy_that_relaunches_the_script_is_refused_in_a_sweep():
    trainer = pl.Trainer(strategy="ddp", accelerator="cpu", devices=2, logger=False)

    with pytest.raises(ConfigError, match=r"DDPStrategy \(as in trainer=ddp\) starts this script again for each rank"):
        check_strategy_fits_run_mode(trainer, RunMode.MULTIRUN)
    check_strategy_fits_run_mode(trainer, RunMode.RUN)


def test_a_spawning_strategy_is_allowed_in_a_sweep():
    trainer = pl.Trainer(strategy="ddp_spawn", accelerator="cpu", devices=2, logger=False)

    check_strategy_fits_run_mode(trainer, RunMode.MULTIRUN)
