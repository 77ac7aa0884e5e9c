"""``xent-train``: train a model chosen in ``conf/`` with XentMonitor attached, and record the run in MLflow.

Examples::

    xent-train                                  # an MLP on digits, on CPU, into ./mlflow.db and ./mlartifacts
    xent-train model=cnn data=digits trainer.max_epochs=20
    xent-train -m model=logreg,mlp,cnn          # a sweep: one MLflow run per job, all in one experiment
    xent-train trainer=ddp trainer.devices=2    # DDP over 2 CPU processes: still one MLflow run
    xent-train logger.tracking_uri=http://127.0.0.1:5000
    xent-train ckpt_path=outputs/.../checkpoints/last.ckpt logger.run_id=<run id>   # resume a run

Also ``python -m xent_plugin.app.train``. From Python: ``train(compose_config(["model=cnn"]))``.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import hydra
import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import MLFlowLogger
from pytorch_lightning.utilities.rank_zero import rank_zero_only

from xent_plugin.app.config import CONFIG_DIR, CONFIG_NAME, compose_config, register_configs
from xent_plugin.app.config_validation import (
    ConfigError,
    build,
    check_datamodule_matches,
    check_optimizer_builds,
    check_resumed_run_exists,
    check_strategy_fits_run_mode,
    check_train_config,
)
from xent_plugin.app.signals import StoppedBySignal, stop_on_signals
from xent_plugin.integrations.mlflow.run_config import log_config, summary_line
from xent_plugin.integrations.mlflow.store import open_store_safely

__all__ = ["EXPERIMENT_KIND_TAG", "MODEL_TRAINING", "TrainResult", "compose_config", "main", "train"]

# The experiment tag that tells MLflow 3's UI which kind of experiment to show, and its value for model training.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING = "custom_model_development"

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What one run produced: its MLflow run id (None off rank 0), final metrics and the closing line."""

    run_id: str | None
    metrics: dict[str, float]
    summary: str | None


def train(cfg: DictConfig) -> TrainResult:
    """Check the config, build data, model, callbacks, logger and trainer from it, then fit and test."""
    choices = _chosen_options()
    overrides = _overrides()
    check_train_config(cfg, choices.get("model"), choices.get("data"), overrides)
    pl.seed_everything(cfg.seed, workers=True)
    if cfg.cpu_threads is not None:
        torch.set_num_threads(cfg.cpu_threads)

    datamodule = build("data.datamodule", cfg.data.datamodule, overrides)
    check_datamodule_matches(datamodule, cfg.data, overrides)
    model = build("model", cfg.model, overrides)
    check_optimizer_builds(model, cfg.model, overrides)
    # The resolved config below is the run's one record of its settings; Lightning would add a second, flat copy
    # of the model's and the datamodule's saved hyperparameters, spelled and valued differently. This is the
    # attribute that their `save_hyperparameters(logger=False)` sets.
    model._log_hyperparams = datamodule._log_hyperparams = False
    callbacks = [
        build(f"callbacks.{name}", node, overrides) for name, node in (cfg.callbacks or {}).items() if node is not None
    ]
    # Lightning's MLFlowLogger opens its store as it is built, so a new SQLite store must be made under the lock
    # first: runs started together (or torchrun's nodes) would otherwise race to create its tables.
    open_store_safely(cfg.logger.tracking_uri)
    logger = build("logger", cfg.logger, overrides, run_name=_run_name(cfg.logger.run_name))
    # After the logger: for a tracking server it sets how long MLflow's requests may take, which this obeys.
    check_resumed_run_exists(cfg.logger)
    trainer = build("trainer", cfg.trainer, overrides, callbacks=callbacks, logger=logger)
    check_strategy_fits_run_mode(trainer, _run_mode())

    with _run_closed_on_exit(logger):
        _mark_experiment_as_model_training(logger)
        log_config(logger, OmegaConf.to_container(cfg, resolve=True), OmegaConf.to_yaml(cfg, resolve=True), overrides)
        trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.ckpt_path)
        if cfg.test:
            trainer.test(model, datamodule=datamodule, ckpt_path=_best_checkpoint(trainer))

    metrics = {key: float(value) for key, value in trainer.callback_metrics.items()}
    if rank_zero_only.rank != 0:
        return TrainResult(run_id=None, metrics=metrics, summary=None)
    summary = summary_line(logger, cfg.logger.tracking_uri, metrics)
    log.info(summary)
    return TrainResult(run_id=logger.run_id, metrics=metrics, summary=summary)


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name=CONFIG_NAME)
def _hydra_main(cfg: DictConfig) -> None:
    try:
        with stop_on_signals():
            train(cfg)
    except ConfigError as error:
        if _run_mode() == RunMode.MULTIRUN or os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise  # in a sweep, Hydra finishes the other jobs, then reports this one
        for problem in error.problems:
            print(f"xent-train: {problem}", file=sys.stderr)  # Hydra's job logging goes to stdout
        sys.exit(1)
    except StoppedBySignal as stop:
        print(f"xent-train: stopped by {stop.name}; exit status {stop.exit_status}.", file=sys.stderr)
        sys.exit(stop.exit_status)


def main() -> None:
    """The ``xent-train`` console script."""
    register_configs()
    _hydra_main()


# ---- helpers -------------------------------------------------------------------------------------------


def _chosen_options() -> dict[str, str]:
    """The option picked in each config group (``{"model": "cnn", ...}``), for messages."""
    if not HydraConfig.initialized():
        return {}
    return {group: str(option) for group, option in HydraConfig.get().runtime.choices.items()}


def _run_mode() -> RunMode:
    return HydraConfig.get().mode if HydraConfig.initialized() else RunMode.RUN


def _overrides() -> list[str]:
    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def _run_name(name: str | None) -> str | None:
    """In a sweep, the job's number follows the name, so that the runs of one sweep stay apart."""
    if name is None or _run_mode() != RunMode.MULTIRUN:
        return name
    return f"{name}-{HydraConfig.get().job.num}"


def _mark_experiment_as_model_training(logger: MLFlowLogger) -> None:
    """Tag the experiment as model training, unless it has a kind already: MLflow 3's UI opens an experiment
    without the tag as a GenAI one (traces, evaluations, an assistant). Through the logger's outbox, when it has
    one, so a tracking server that comes up late still gets the tag."""
    if rank_zero_only.rank != 0:
        return
    outbox = getattr(logger, "outbox", None)
    if outbox is not None:
        outbox.call("the experiment's model-training tag", _tag_experiment_of_run)
        return
    try:
        _tag_experiment_of_run(logger.experiment, logger.run_id)
    except Exception as error:  # noqa: BLE001 - a tracking failure must not stop training
        warnings.warn(
            f"xent-train: could not tag the MLflow experiment as model training ({type(error).__name__}: {error}).",
            UserWarning,
            stacklevel=2,
        )


def _tag_experiment_of_run(client: MlflowClient, run_id: str) -> None:
    experiment_id = client.get_run(run_id).info.experiment_id
    if EXPERIMENT_KIND_TAG not in client.get_experiment(experiment_id).tags:
        client.set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, MODEL_TRAINING)


def _best_checkpoint(trainer: pl.Trainer) -> str | None:
    """Test the best checkpoint when one was kept, else the weights as they are."""
    callback = trainer.checkpoint_callback
    return "best" if callback is not None and getattr(callback, "best_model_path", "") else None


@contextmanager
def _run_closed_on_exit(logger: MLFlowLogger) -> Iterator[None]:
    """Close the MLflow run however the block ends early: KILLED after a stopping signal, FAILED otherwise.

    Lightning marks the run FAILED when fit or test raises; this also covers the steps around them.
    """
    try:
        yield
    except StoppedBySignal:
        if rank_zero_only.rank == 0:
            logger.finalize("KILLED")
        raise
    except BaseException:
        if rank_zero_only.rank == 0:
            logger.finalize("failed")
        raise


if __name__ == "__main__":
    main()
