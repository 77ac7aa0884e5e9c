"""conf/ composes with Hydra's compose API: every model fits the data it should, and nothing else does."""

from __future__ import annotations

import itertools
import re

import pytest
import pytorch_lightning as pl
from hydra.errors import ConfigCompositionException, MissingConfigException
from hydra.utils import instantiate

from xent_plugin.app.config import CONFIG_DIR, compose_config
from xent_plugin.app.config_validation import ConfigError, check_datamodule_matches, check_train_config
from xent_plugin.metrics import XentMetrics

MODELS = ("logreg", "mlp", "cnn", "gru", "transformer")
DATASETS = ("digits", "breast_cancer", "synthetic", "markov")
# The specification: flat-input models on every table or image set, the CNN on images, the sequence models on tokens.
FITTING = {
    ("logreg", "digits"),
    ("logreg", "breast_cancer"),
    ("logreg", "synthetic"),
    ("mlp", "digits"),
    ("mlp", "breast_cancer"),
    ("mlp", "synthetic"),
    ("cnn", "digits"),
    ("gru", "markov"),
    ("transformer", "markov"),
}
REFUSED = sorted(set(itertools.product(MODELS, DATASETS)) - FITTING)
EXPERIMENTS = sorted(path.stem for path in (CONFIG_DIR / "experiment").glob("*.yaml"))


def compose(tmp_path, *overrides: str):
    return compose_config(overrides, output_dir=tmp_path / "run")


def test_every_option_in_conf_is_covered_by_these_tests():
    assert {path.stem for path in (CONFIG_DIR / "model").glob("*.yaml")} == set(MODELS)
    assert {path.stem for path in (CONFIG_DIR / "data").glob("*.yaml")} == set(DATASETS)


@pytest.mark.parametrize(("model_name", "data_name"), sorted(FITTING))
def test_fitting_model_and_data_instantiate_and_feed_the_monitor(tmp_path, model_name, data_name):
    cfg = compose(tmp_path, f"model={model_name}", f"data={data_name}", "data.datamodule.batch_size=4")
    check_train_config(cfg, model_name, data_name)
    datamodule = instantiate(cfg.data.datamodule)
    check_datamodule_matches(datamodule, cfg.data)
    model = instantiate(cfg.model)
    datamodule.setup("fit")
    batch = next(iter(datamodule.val_dataloader()))

    output = model.step(batch)

    monitor = cfg.callbacks.xent_monitor
    metrics = XentMetrics(task=monitor.task, class_dim=monitor.class_dim, ignore_index=monitor.ignore_index)
    metrics.update(output["logits"].detach(), output["target"], reference=output.get("reference"))
    assert metrics.compute()["cross_entropy"].isfinite()


@pytest.mark.parametrize(("model_name", "data_name"), REFUSED)
def test_a_model_that_cannot_read_the_data_is_refused_naming_both(tmp_path, model_name, data_name):
    cfg = compose(tmp_path, f"model={model_name}", f"data={data_name}")

    with pytest.raises(ConfigError) as refusal:
        check_train_config(cfg, model_name, data_name)

    message = str(refusal.value)
    assert f"model={model_name} needs" in message
    assert f"data={data_name} offers only" in message
    fitting = sorted(model for model, data in FITTING if data == data_name)
    assert f"Models in conf/model that fit data={data_name}: {', '.join(fitting)}." in message


def test_the_cnn_on_tabular_data_is_refused_because_it_needs_images(tmp_path):
    cfg = compose(tmp_path, "model=cnn", "data=breast_cancer")

    with pytest.raises(ConfigError, match=r"needs image inputs \(it reads data.inputs.image\)"):
        check_train_config(cfg, "cnn", "breast_cancer")


def test_an_unknown_option_in_a_group_lists_the_available_ones(tmp_path):
    with pytest.raises(MissingConfigException) as error:
        compose(tmp_path, "model=resnet")

    message = str(error.value)
    assert "Could not find 'model/resnet'" in message
    assert all(f"\t{name}\n" in message + "\n" for name in MODELS)


@pytest.mark.parametrize(
    ("override", "key"),
    [("seed=abc", "seed"), ("data.num_classes=ten", "data.num_classes"), ("test=maybe", "test")],
)
def test_a_value_of_the_wrong_type_fails_while_composing(tmp_path, override, key):
    with pytest.raises(ConfigCompositionException, match=f"Error merging override {override}") as error:
        compose(tmp_path, override)
    assert f"full_key: {key}" in str(error.value.__cause__)


def test_a_misspelled_key_fails_while_composing_and_says_how_to_add_one(tmp_path):
    with pytest.raises(ConfigCompositionException, match=r"Could not override 'trainer.max_epoch'"):
        compose(tmp_path, "trainer.max_epoch=3")


def test_the_default_run_is_an_mlp_on_digits_on_cpu_logging_to_sqlite_under_the_start_directory(tmp_path):
    cfg = compose(tmp_path)

    assert cfg.model.net._target_ == "xent_plugin.app.models.MLP"
    assert cfg.data.datamodule._target_ == "xent_plugin.app.data.DigitsDataModule"
    assert cfg.trainer.accelerator == "cpu"
    assert cfg.trainer.enable_progress_bar is True
    assert cfg.logger.tracking_uri == f"sqlite:///{cfg.paths.work_dir}/mlflow.db"
    assert cfg.logger.artifact_location == f"{cfg.paths.work_dir}/mlartifacts"
    assert re.fullmatch(r"mlp-digits-\d{4}-\d{6}", cfg.logger.run_name)


def test_a_tracking_server_keeps_the_artifacts_where_the_server_says(tmp_path):
    cfg = compose(tmp_path, "logger.tracking_uri=http://127.0.0.1:5000")

    assert cfg.logger.artifact_location is None


def test_model_dimensions_come_from_the_data(tmp_path):
    cfg = compose(tmp_path, "data=synthetic", "data.num_classes=6", "data.inputs.features=3")

    assert (cfg.model.net.input_dim, cfg.model.net.num_classes) == (3, 6)
    assert (cfg.data.datamodule.num_features, cfg.data.datamodule.num_classes) == (3, 6)


def test_the_optimizer_and_scheduler_are_partial_so_the_model_builds_them_for_its_parameters(tmp_path):
    cfg = compose(tmp_path, "experiment=digits_cnn")
    model = instantiate(cfg.model)

    optimizers = model.configure_optimizers()

    assert optimizers["optimizer"].param_groups[0]["lr"] == cfg.model.optimizer.lr
    assert optimizers["lr_scheduler"]["scheduler"].T_max == cfg.trainer.max_epochs


def test_data_that_states_other_facts_than_its_datamodule_is_refused(tmp_path):
    cfg = compose(tmp_path, "data.num_classes=3")
    datamodule = instantiate(cfg.data.datamodule)

    with pytest.raises(
        ConfigError,
        match=r"data.num_classes: expected 10, the num_classes of the DigitsDataModule that data.datamodule builds",
    ):
        check_datamodule_matches(datamodule, cfg.data)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_preset_composes_and_passes_the_checks(tmp_path, experiment):
    cfg = compose(tmp_path, f"experiment={experiment}")

    check_train_config(cfg)


@pytest.mark.parametrize("trainer_option", ["default", "ddp", "ddp_spawn"])
def test_every_cpu_trainer_option_builds_a_trainer(tmp_path, trainer_option):
    cfg = compose(tmp_path, f"trainer={trainer_option}")
    check_train_config(cfg)

    trainer = instantiate(cfg.trainer, logger=False)

    assert isinstance(trainer, pl.Trainer)
    assert trainer.max_epochs == cfg.trainer.max_epochs


def test_callbacks_can_be_chosen_as_a_list_or_switched_off(tmp_path):
    chosen = compose(tmp_path, "callbacks=[xent_monitor,early_stopping]")
    none = compose(tmp_path, "callbacks=none")
    dropped = compose(tmp_path, "callbacks.model_checkpoint=null")

    assert set(chosen.callbacks) == {"xent_monitor", "early_stopping"}
    assert not none.callbacks
    assert dropped.callbacks.model_checkpoint is None
    check_train_config(dropped)
