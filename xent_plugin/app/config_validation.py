"""Checks of a composed ``xent-train`` config that Hydra's schema cannot make, run before anything is built.

- :func:`check_model_fits_data`: the model reads only input views (``data.inputs.*``) that the data offers.
- :func:`check_values_that_follow_the_data`: an override does not contradict the data on a value the config
  reads from it (``model.net.input_dim=32`` on 64 features).
- :func:`build`: a target that refuses its arguments is reported with the overrides that set them, and
  :func:`check_optimizer_builds` builds the optimizer once at start, so ``model.optimizer.lr=-0.1`` fails
  there rather than after the data and trainer are set up.
- :func:`check_resumed_run_exists`: ``logger.run_id`` names a run the tracking store has.
- :func:`check_datamodule_matches`: after the datamodule is built, its own ``task`` and ``num_classes``
  agree with what ``data`` states (and what models were built from).
- :func:`check_strategy_fits_run_mode`: no strategy that re-launches the script inside a Hydra sweep.

Keys and types are not checked here: the bundled options extend structured configs of their classes, so Hydra
refuses an unknown key or a value of the wrong type while composing (see :mod:`xent_plugin.app.config`).
Each problem is one line that names the override (or config path), what was given and what was expected; all
problems found in one pass are raised together as one :class:`ConfigError`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError
from pytorch_lightning.strategies.launchers.subprocess_script import _SubprocessScriptLauncher

from xent_plugin.app.config import CONFIG_DIR, CONFIG_NAME
from xent_plugin.app.models._task import TASKS

INPUT_VIEWS = ("features", "image", "tokens")

_INPUT_VIEW_REFERENCE = re.compile(r"\$\{data\.inputs\.(\w+)")
_DATA_REFERENCE = re.compile(r"\$\{(data\.[\w.]+)\}")
_FULL_KEY = re.compile(r"full_key: (\S+)")


class ConfigError(ValueError):
    """A config that cannot run; the message lists every problem found, one per line."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid xent-train config:\n  - " + "\n  - ".join(problems))


def check_train_config(
    cfg: DictConfig, model_name: str | None = None, data_name: str | None = None, overrides: Sequence[str] = ()
) -> None:
    """Every check that needs no built object.

    ``model_name``/``data_name`` are the chosen options and ``overrides`` the command line's, for messages.
    """
    # The data's facts first: everything else reads them. Then the model must fit the data before the rest can
    # resolve (a model that reads a view the data lacks cannot).
    problems = _resolution_problems(cfg.data) or check_data_facts(cfg.data)
    if not problems:
        problems += check_model_fits_data(cfg, model_name, data_name)
        problems += check_values_that_follow_the_data(cfg, overrides, data_name)
    if cfg.cpu_threads is not None and cfg.cpu_threads < 1:
        problems.append(f"cpu_threads={cfg.cpu_threads}: expected an integer >= 1, or null for torch's default.")
    problems += check_accelerator_available(cfg.trainer)
    if not problems:
        problems += _resolution_problems(cfg)
    if problems:
        raise ConfigError(problems)


def _resolution_problems(node: DictConfig) -> list[str]:
    try:
        OmegaConf.to_container(node, resolve=True)
    except InterpolationResolutionError as error:
        return [f"{error.full_key}: {_one_line(error.msg)}"]
    return []


def check_data_facts(data: DictConfig) -> list[str]:
    problems = []
    if data.task not in TASKS:
        problems.append(f"data.task must be one of {list(TASKS)}, got {data.task!r}.")
    offered = [view for view in INPUT_VIEWS if data.inputs[view] is not None]
    if not offered:
        problems.append(f"data.inputs must offer at least one of {list(INPUT_VIEWS)}; all are null.")
    return problems


def check_model_fits_data(cfg: DictConfig, model_name: str | None = None, data_name: str | None = None) -> list[str]:
    """A model states what it reads by interpolation (``${data.inputs.image.channels}``); the data must offer it."""
    needed = input_views_read_by(cfg.model)
    offered = {view for view in INPUT_VIEWS if cfg.data.inputs[view] is not None}
    missing = sorted(needed - offered)
    if not missing:
        return []
    model = f"model={model_name}" if model_name else "the model"
    data = f"data={data_name}" if data_name else "the data"
    fitting = [name for name, views in model_options_by_input_views().items() if views and views <= offered]
    hint = f" Models in conf/model that fit {data}: {', '.join(fitting)}." if fitting else ""
    return [
        f"{model} needs {' and '.join(missing)} inputs (it reads "
        f"{', '.join(f'data.inputs.{view}' for view in missing)}), but {data} offers only: "
        f"{', '.join(sorted(offered)) or 'nothing'}.{hint}"
    ]


def input_views_read_by(node: Any) -> set[str]:
    """The ``data.inputs`` views that a config node's interpolations read.

    Example:
        >>> sorted(input_views_read_by(OmegaConf.create({"net": {"in_channels": "${data.inputs.image.channels}"}})))
        ['image']
    """
    container = OmegaConf.to_container(node, resolve=False) if isinstance(node, DictConfig) else node
    return set(_INPUT_VIEW_REFERENCE.findall(str(container)))


def model_options_by_input_views(config_dir: Path = CONFIG_DIR) -> dict[str, set[str]]:
    """Each option in ``conf/model`` and the input views it reads."""
    return {
        path.stem: input_views_read_by(OmegaConf.load(path)) for path in sorted((config_dir / "model").glob("*.yaml"))
    }


def check_values_that_follow_the_data(
    cfg: DictConfig, overrides: Sequence[str], data_name: str | None = None
) -> list[str]:
    """An override may not contradict the data on a value that the config reads from it.

    Models and callbacks take the data's facts by interpolation (``input_dim: ${data.inputs.features}``,
    ``task: ${data.task}``): ``model.net.input_dim=32`` on 64 features would only fail inside the first batch.
    Which keys follow the data is read from the config composed without the command line's values.
    """
    values = [(key, value) for key, value in map(_split_override, overrides) if key and not key.startswith("hydra.")]
    if not values:
        return []
    unset = _compose_without_values(overrides)
    data = f"data={data_name}" if data_name else "the data"
    problems = []
    for key, value in values:
        reference = _DATA_REFERENCE.fullmatch(str(_raw_value(unset, key)))
        if reference is None:
            continue
        expected = OmegaConf.select(cfg, reference.group(1))
        if OmegaConf.select(cfg, key) != expected:
            problems.append(
                f"{key}={value}: expected {expected!r}, the {reference.group(1)} of {data}; this value follows "
                f"the data, so leave {key} out (or change {reference.group(1)} where the data allows)."
            )
    return problems


def check_accelerator_available(trainer: DictConfig) -> list[str]:
    """A named ``trainer.accelerator`` exists on this machine (Lightning's own refusal of a missing one is about
    the package it would need, not the setting)."""
    from pytorch_lightning.accelerators import AcceleratorRegistry

    name = trainer.get("accelerator")
    registered = AcceleratorRegistry.available_accelerators()
    wanted = "cuda" if name == "gpu" else name
    if not isinstance(wanted, str) or wanted not in registered:
        return []  # "auto", an Accelerator object, or a name Lightning itself refuses with the list of names
    available = sorted(option for option in registered if _is_available(AcceleratorRegistry[option]["accelerator"]))
    if wanted in available:
        return []
    return [f"trainer.accelerator={name}: not available on this machine; expected one of {available + ['auto']}."]


def _is_available(accelerator: type) -> bool:
    try:
        return bool(accelerator.is_available())
    except Exception:  # noqa: BLE001 - an accelerator whose package is missing is not available
        return False


def check_resumed_run_exists(logger: DictConfig) -> None:
    """``logger.run_id`` names a run that the tracking store has; a store that cannot be reached is let through
    (the logger keeps what it cannot send), but one that answers that there is no such run is not."""
    run_id = logger.get("run_id")
    if not run_id:
        return
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        MlflowClient(logger.tracking_uri).get_run(run_id)
    except MlflowException as error:
        if error.error_code != "RESOURCE_DOES_NOT_EXIST":
            return
        raise ConfigError(
            [
                f"logger.run_id={run_id}: no run with this id in {logger.tracking_uri}; expected the id of a run "
                "in that store (as printed when it started), or no logger.run_id to start a new run."
            ]
        ) from None


def build(path: str, node: Any, overrides: Sequence[str] = (), **kwargs: Any) -> Any:
    """``hydra.utils.instantiate(node, **kwargs)``; a target that refuses its arguments is a :class:`ConfigError`
    naming the command-line overrides of that node (or its config path) and the target's own message."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as error:
        message = str(error)
        failed = _FULL_KEY.search(message)
        failed_path = failed.group(1) if failed else path
        target = OmegaConf.select(node, failed_path[len(path) + 1 :]) if failed_path != path else node
        name = target.get("_target_", failed_path) if isinstance(target, DictConfig) else failed_path
        reason = _one_line(error.__cause__) if error.__cause__ is not None else _one_line(message)
        raise ConfigError([f"{_subject(failed_path, overrides, reason)}: {name} refused it: {reason}"]) from error


def check_optimizer_builds(model: object, model_cfg: Any, overrides: Sequence[str] = ()) -> None:
    """Build ``model.optimizer`` (and ``model.scheduler``) once on the model's parameters, as ``fit`` will, so
    an argument they refuse (``lr=-0.1``) fails at start, not after the data and trainer are set up."""
    if not isinstance(model_cfg, DictConfig) or model_cfg.get("optimizer") is None:
        return
    optimizer = _call_factory("model.optimizer", model_cfg.optimizer, overrides, model.parameters())
    if model_cfg.get("scheduler") is not None:
        _call_factory("model.scheduler", model_cfg.scheduler, overrides, optimizer)


def check_datamodule_matches(datamodule: object, data: DictConfig, overrides: Sequence[str] = ()) -> None:
    """The built datamodule's own ``task``/``num_classes`` (where it has them) agree with ``data``."""
    problems = []
    for key in ("task", "num_classes"):
        actual = getattr(datamodule, key, None)
        stated = data[key]
        if actual is not None and actual != stated:
            problems.append(
                f"{_subject(f'data.{key}', overrides)}: expected {actual!r}, the {key} of the "
                f"{type(datamodule).__name__} that data.datamodule builds (data.{key} is {stated!r})."
            )
    if problems:
        raise ConfigError(problems)


def check_strategy_fits_run_mode(trainer: pl.Trainer, run_mode: RunMode) -> None:
    """Refuse, in a sweep, a strategy that re-runs the script per rank (``trainer=ddp``): each would sweep.

    Lightning re-launches ``sys.argv`` (``-m`` included) with ``hydra.run.dir`` pinned, so every rank would
    start a sweep of its own (facebookresearch/hydra#2070). ``ddp_spawn`` starts its ranks from inside the
    job instead, and processes that a cluster starts (torchrun, SLURM) are not re-launched at all.
    """
    strategy = trainer.strategy
    relaunches = isinstance(strategy.launcher, _SubprocessScriptLauncher) and not (
        strategy.cluster_environment is not None and strategy.cluster_environment.creates_processes_externally
    )
    if run_mode == RunMode.MULTIRUN and relaunches:
        raise ConfigError(
            [
                f"trainer.strategy: {type(strategy).__name__} (as in trainer=ddp) starts this script again for each "
                "rank, which a Hydra sweep (-m) cannot do: every rank would run the whole sweep. In a sweep use "
                "trainer=ddp_spawn, or run each job on its own, without -m."
            ]
        )


# ---- overrides and messages ------------------------------------------------------------------------------


def _split_override(override: str) -> tuple[str | None, str]:
    """``"+model.net.x=3"`` -> ``("model.net.x", "3")``; ``(None, ...)`` for a key without a dot (a group choice
    such as ``model=cnn``, or a top-level value such as ``seed=1``), a deletion, or a package override."""
    if override.startswith("~") or "=" not in override:
        return None, override
    key, _, value = override.lstrip("+").partition("=")
    if "." not in key or "/" in key or "@" in key:
        return None, value
    return key, value


def _subject(path: str, overrides: Sequence[str], message: str = "") -> str:
    """The command-line overrides that set ``path`` or a key inside it, as typed; else ``path`` itself.

    Where ``message`` (the refusal) names some of their keys, only those: ``trainer.devices=two``, not every
    ``trainer.*`` override of the command line.
    """
    given = [
        override
        for override in overrides
        if (key := _split_override(override)[0]) is not None and (key == path or key.startswith(f"{path}."))
    ]
    named = [override for override in given if re.search(rf"\b{_last_key(override)}\b", message)]
    return ", ".join(named or given) or path


def _last_key(override: str) -> str:
    return re.escape(str(_split_override(override)[0]).rsplit(".", 1)[-1])


def _one_line(error: object) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def _call_factory(path: str, node: DictConfig, overrides: Sequence[str], argument: Any) -> Any:
    factory = build(path, node, overrides)
    try:
        return factory(argument)
    except Exception as error:  # noqa: BLE001 - whatever the target raises is reported with its config path
        reason = _one_line(error)
        raise ConfigError([f"{_subject(path, overrides, reason)}: {node._target_} refused it: {reason}"]) from error


def _compose_without_values(overrides: Sequence[str]) -> DictConfig:
    """The config composed with the command line's group choices (``model=cnn``) but none of its values."""
    choices = [override for override in overrides if _split_override(override)[0] is None]
    if GlobalHydra.instance().is_initialized():  # inside xent-train: its own search path and primary config
        return compose(config_name=HydraConfig.get().job.config_name, overrides=choices)
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name=CONFIG_NAME, overrides=choices)


def _raw_value(cfg: DictConfig, key: str) -> Any:
    """The value at dotted ``key`` as written, interpolations unresolved; None where there is no such key."""
    node: Any = OmegaConf.to_container(cfg, resolve=False)
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node
