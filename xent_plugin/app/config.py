"""The schema of ``xent-train``'s config, and how to compose it outside the command line.

``conf/train.yaml`` starts from ``train_schema`` (:class:`TrainConfig`), so Hydra checks every key and type it
declares while composing: ``xent-train seed=abc`` or ``data.num_clases=3`` fails before anything is built.
The nodes built with ``_target_`` (``model``, ``data.datamodule``, ``trainer``, ``logger``, ``callbacks``)
are left open here, because users plug in their own classes. Each bundled option extends the schema of its
class instead (``schema/<name>`` in Hydra's ConfigStore, made from the class's signature by hydra-zen's
``builds``), so ``trainer.max_epoch=3`` or ``model.net.hidden_dims=wide`` fails while composing as well.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.utils import get_object
from omegaconf import MISSING, DictConfig, OmegaConf, open_dict

# conf/ sits at the top of the repository; xent_plugin/app/conf links to it, and the wheel ships it there.
CONFIG_DIR = Path(__file__).resolve().parent / "conf"
CONFIG_NAME = "train"


@dataclass
class ImageInputs:
    """``x`` as images (B, channels, height, width)."""

    channels: int = MISSING
    height: int = MISSING
    width: int = MISSING


@dataclass
class TokenInputs:
    """``x`` as token ids (B, seq_len) in ``[0, vocab_size)``."""

    vocab_size: int = MISSING
    seq_len: int = MISSING


@dataclass
class DataInputs:
    """The views of a batch's ``x`` that a model may read; a dataset offers those that are not null."""

    features: int | None = None  # width after flattening
    image: ImageInputs | None = None
    tokens: TokenInputs | None = None


# A datamodule states its task and, when fixed, its class count as class attributes; the data config reads them
# from there rather than stating them a second time.
_DATAMODULE_ATTRIBUTE = "${class_attribute:${.datamodule._target_},%s}"


@dataclass
class DataConfig:
    """A datamodule and the facts about its batches that models and callbacks read by interpolation."""

    datamodule: Any = MISSING
    task: str = _DATAMODULE_ATTRIBUTE % "task"
    num_classes: int = _DATAMODULE_ATTRIBUTE % "num_classes"
    # dimension of the logits that indexes classes: 1 for (B, C), -1 for token logits (B, T, V)
    class_dim: int = 1
    # target value that does not count (padding); null where every target counts
    ignore_index: int | None = None
    inputs: DataInputs = field(default_factory=DataInputs)


@dataclass
class PathsConfig:
    work_dir: str = MISSING
    output_dir: str = MISSING


@dataclass
class TrainConfig:
    """Everything ``xent-train`` reads. ``model``, ``trainer``, ``logger`` and each callback are ``_target_`` nodes."""

    data: DataConfig = field(default_factory=DataConfig)
    model: Any = MISSING
    trainer: Any = MISSING
    logger: Any = MISSING
    callbacks: dict[str, Any] | None = field(default_factory=dict)
    seed: int = 0
    ckpt_path: str | None = None
    test: bool = True
    cpu_threads: int | None = None
    paths: PathsConfig = field(default_factory=PathsConfig)


def local_artifact_location(tracking_uri: str, local_dir: str) -> str | None:
    """Where a new experiment keeps its artifacts: ``local_dir`` for a local database, the server's choice otherwise.

    MLflow's own default for a SQLite store is ``./mlruns`` relative to wherever the process runs; a tracking
    server must choose for itself (``--artifacts-destination``), or its UI could not show the files.

    Example:
        >>> local_artifact_location("sqlite:////tmp/mlflow.db", "/tmp/mlartifacts")
        '/tmp/mlartifacts'
        >>> local_artifact_location("http://127.0.0.1:5000", "/tmp/mlartifacts") is None
        True
    """
    return local_dir if tracking_uri.startswith(("sqlite:", "file:")) else None


def class_attribute(target: str, name: str) -> Any:
    """The attribute ``name`` of the class (or other object) that the dotted path ``target`` names.

    Example:
        >>> class_attribute("xent_plugin.app.data.DigitsDataModule", "num_classes")
        10
    """
    owner = get_object(target)
    if not hasattr(owner, name):
        raise AttributeError(f"{target} has no attribute {name!r}: state it in the config instead.")
    return getattr(owner, name)


# Drawn once per process: two runs started in the same second get their own output directories, and every
# resolution of hydra.run.dir in this process names the same one.
_PROCESS_ID = secrets.token_hex(3)


def process_id() -> str:
    """Six hex digits that name this process's run among others started in the same second.

    Example:
        >>> len(process_id()), process_id() == process_id()
        (6, True)
    """
    return _PROCESS_ID


def bundled_schemas() -> dict[str, type]:
    """``schema/<name>`` -> a structured config with every parameter of the class, typed as annotated.

    hydra-zen's ``builds(..., populate_full_signature=True)`` reads the signature, so no argument list is
    written twice; annotations OmegaConf cannot hold (unions, tensors, callables) become ``Any``.
    """
    import pytorch_lightning as pl
    import torch
    from hydra_zen import builds
    from pytorch_lightning.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint
    from pytorch_lightning.loggers import MLFlowLogger

    from xent_plugin.app import data, models
    from xent_plugin.integrations.lightning import XentMonitor
    from xent_plugin.integrations.mlflow import ResilientMLFlowLogger

    def full(target: type, **options: Any) -> type:
        return builds(target, populate_full_signature=True, **options)

    classes = {
        "xent_classifier": models.XentClassifier,
        "logistic_regression": models.LogisticRegression,
        "mlp": models.MLP,
        "small_cnn": models.SmallCNN,
        "tiny_gru": models.TinyGRU,
        "tiny_transformer": models.TinyTransformer,
        "digits": data.DigitsDataModule,
        "breast_cancer": data.BreastCancerDataModule,
        "synthetic": data.SyntheticDataModule,
        "markov": data.MarkovDataModule,
        "trainer": pl.Trainer,
        "xent_monitor": XentMonitor,
        "model_checkpoint": ModelCheckpoint,
        "learning_rate_monitor": LearningRateMonitor,
        "early_stopping": EarlyStopping,
    }
    schemas = {name: full(target) for name, target in classes.items()}
    # The model builds its optimizer on its own parameters, so the config holds the rest of the call.
    schemas["adam"] = full(torch.optim.Adam, zen_partial=True, zen_exclude=["params"])
    # ResilientMLFlowLogger passes **kwargs on to MLFlowLogger: its schema has the parameters of both.
    schemas["mlflow_logger"] = full(ResilientMLFlowLogger, builds_bases=(full(MLFlowLogger),))
    return schemas


def register_configs() -> None:
    """Store the schemas and register the resolvers that ``conf/`` uses; safe to call more than once."""
    store = ConfigStore.instance()
    store.store(name="train_schema", node=TrainConfig)
    for name, schema in bundled_schemas().items():
        store.store(group="schema", name=name, node=schema)
    OmegaConf.register_new_resolver("local_artifact_location", local_artifact_location, replace=True)
    OmegaConf.register_new_resolver("process_id", process_id, replace=True)
    OmegaConf.register_new_resolver("class_attribute", class_attribute, replace=True)


def compose_config(overrides: Sequence[str] = (), output_dir: str | Path | None = None) -> DictConfig:
    """The config ``xent-train <overrides>`` would run, for the Python API and tests.

    ``${hydra:...}`` values resolve as on the command line; ``output_dir`` stands in for the run directory
    that Hydra would create (default: ``outputs/composed`` under the current directory).

    Example:
        >>> cfg = compose_config(["model=logreg", "data=breast_cancer"], output_dir="/tmp/run")
        >>> cfg.model.net.input_dim, cfg.data.task, cfg.paths.output_dir
        (30, 'binary', '/tmp/run')
    """
    register_configs()
    output_dir = Path(output_dir if output_dir is not None else Path.cwd() / "outputs" / "composed")
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3", job_name="xent-train"):
        cfg = compose(config_name=CONFIG_NAME, overrides=list(overrides), return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(output_dir.resolve())
    # ${hydra:...} interpolations read the global HydraConfig, as they do inside a Hydra job.
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg.hydra
    return cfg
