"""Checks of a composed ``xent-train`` config that Hydra's schema cannot make, run before anything is built.

- :func:`check_model_fits_data`: the model reads only input views (``data.inputs.*``) that the data offers.
- :func:`check_target_arguments`: every ``_target_`` node names an importable callable, and its keys are
  parameters of that callable with values of the annotated type, so ``model.optimizer.lr=abc`` fails at
  start rather than at the first optimizer step.
- :func:`check_datamodule_matches`: after the datamodule is built, its own ``task`` and ``num_classes``
  agree with what ``data`` states (and what models were built from).
- :func:`check_strategy_fits_run_mode`: no strategy that re-launches the script inside a Hydra sweep.

Each problem is reported with its config path, what was given and what was expected; all problems found
in one pass are raised together as one :class:`ConfigError`.
"""

from __future__ import annotations

import collections.abc
import difflib
import inspect
import re
import types
import typing
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Union

import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir
from hydra._internal.utils import _locate
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.strategies.launchers.subprocess_script import _SubprocessScriptLauncher

from xent_plugin.app.config import CONFIG_DIR, CONFIG_NAME
from xent_plugin.app.models._task import TASKS

INPUT_VIEWS = ("features", "image", "tokens")
# Keys that hydra.utils.instantiate reads itself rather than passing to the target.
INSTANTIATE_KEYS = frozenset({"_target_", "_partial_", "_recursive_", "_convert_", "_args_"})

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
    problems = check_data_facts(cfg.data)
    problems += check_model_fits_data(cfg, model_name, data_name)
    problems += check_values_that_follow_the_data(cfg, overrides, data_name)
    if cfg.cpu_threads is not None and cfg.cpu_threads < 1:
        problems.append(f"cpu_threads={cfg.cpu_threads}: expected an integer >= 1, or null for torch's default.")
    problems += check_accelerator_available(cfg.trainer)
    if not problems:
        # Resolving needs the model to fit the data: a model that reads a missing view cannot resolve.
        resolved = OmegaConf.to_container(cfg, resolve=True)
        for path, node in target_nodes(resolved):
            problems += check_target_arguments(path, node)
    if problems:
        raise ConfigError(problems)


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


def target_nodes(container: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every dict with a ``_target_`` in a resolved config container, with its dotted path."""
    if isinstance(container, Mapping):
        if "_target_" in container:
            yield path, container
        for key, value in container.items():
            yield from target_nodes(value, f"{path}.{key}" if path else str(key))
    elif isinstance(container, list):
        for index, value in enumerate(container):
            yield from target_nodes(value, f"{path}[{index}]")


def check_target_arguments(path: str, node: Mapping[str, Any]) -> list[str]:
    """The node's keys against the parameters of its ``_target_``: names, required ones and annotated types."""
    try:
        # The lookup hydra.utils.instantiate uses (its public get_object also logs every failure).
        target = _locate(node["_target_"])
    except Exception as error:  # noqa: BLE001 - any import failure is reported the same way
        reason = " ".join(str(error).split())
        return [f"{path}._target_: cannot import {node['_target_']!r}: {reason}"]
    if not callable(target):
        return [f"{path}._target_: {node['_target_']!r} is not a class or function."]
    parameters, required, accepts_any_name = _parameters(target)
    if parameters is None:  # a builtin without a readable signature
        return []
    name = node["_target_"]
    given = {key: value for key, value in node.items() if key not in INSTANTIATE_KEYS}
    problems = []
    for key, value in given.items():
        if key not in parameters:
            if not accepts_any_name:
                problems.append(f"{path}.{key}: {name} has no parameter {key!r}{_suggestion(key, parameters)}.")
            continue
        hint, default = parameters[key]
        if value is None and default is None:
            continue
        if not _matches(value, hint):
            problems.append(
                f"{path}.{key}: {name} expects {_describe(hint)}, got {_show(value)} ({type(value).__name__})."
            )
    if not node.get("_partial_", False) and "_args_" not in node:
        missing = [key for key in required if key not in given]
        if missing:
            problems.append(f"{path}: {name} needs {', '.join(repr(key) for key in missing)}, which the config lacks.")
    return problems


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


# ---- signatures and annotations ------------------------------------------------------------------------


def _parameters(target: Any) -> tuple[dict[str, tuple[Any, Any]] | None, list[str], bool]:
    """``target``'s parameters as ``{name: (type hint, default)}``, the required ones, and whether any name goes.

    A class whose ``__init__`` takes ``**kwargs`` is taken to pass them to its base class (as
    ``ResilientMLFlowLogger`` does to ``MLFlowLogger``), so the bases' parameters count too; only the
    target's own required parameters are required (a subclass may fill in its base's).
    """
    if inspect.isclass(target):
        functions = [vars(base)["__init__"] for base in target.__mro__ if "__init__" in vars(base)]
    else:
        functions = [target]
    parameters: dict[str, tuple[Any, Any]] = {}
    required: list[str] = []
    for depth, function in enumerate(functions):
        if function is object.__init__:
            return parameters, required, True
        try:
            signature = inspect.signature(function)
        except (TypeError, ValueError):
            return (parameters or None), required, True
        hints = _type_hints(function)
        takes_kwargs = False
        for parameter in list(signature.parameters.values())[1 if inspect.isclass(target) else 0 :]:
            if parameter.kind is inspect.Parameter.VAR_KEYWORD:
                takes_kwargs = True
            elif parameter.kind is not inspect.Parameter.VAR_POSITIONAL:
                parameters.setdefault(parameter.name, (hints.get(parameter.name, Any), parameter.default))
                if depth == 0 and parameter.default is inspect.Parameter.empty:
                    required.append(parameter.name)
        if not takes_kwargs:
            return parameters, required, False
    return parameters, required, True


def _type_hints(function: Any) -> dict[str, Any]:
    try:
        return typing.get_type_hints(function)
    except Exception:  # noqa: BLE001 - unresolvable annotations are simply not checked
        return {}


def _matches(value: Any, hint: Any) -> bool:
    """Whether a config value can be ``hint``. Types this cannot judge (any other class) accept everything."""
    if hint is Any or isinstance(hint, typing.TypeVar):
        return True
    if isinstance(value, Mapping) and "_target_" in value:
        return True  # instantiated into an object first
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        return any(_matches(value, member) for member in typing.get_args(hint))
    if origin is Literal:
        return value in typing.get_args(hint)
    if hint is type(None) or hint is None:
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float or hint is torch.Tensor:  # a tensor argument given in a config is a number
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin in (list, tuple, collections.abc.Sequence, collections.abc.Iterable):
        return isinstance(value, (list, tuple)) and _items_match(value, typing.get_args(hint), origin is tuple)
    if hint in (list, tuple):
        return isinstance(value, (list, tuple))
    if origin in (dict, collections.abc.Mapping) or hint in (dict, Mapping):
        arguments = typing.get_args(hint)
        return isinstance(value, Mapping) and (
            not arguments or all(_matches(item, arguments[1]) for item in value.values())
        )
    return True


def _items_match(items: list | tuple, arguments: tuple[Any, ...], fixed_length: bool) -> bool:
    if not arguments:
        return True
    if fixed_length and not (len(arguments) == 2 and arguments[1] is Ellipsis):
        return len(items) == len(arguments) and all(map(_matches, items, arguments))
    return all(_matches(item, arguments[0]) for item in items)


def _describe(hint: Any) -> str:
    if hint is type(None):
        return "None"
    if typing.get_origin(hint) in (Union, types.UnionType):
        return " or ".join(_describe(member) for member in typing.get_args(hint))
    if typing.get_origin(hint) is Literal:
        return "one of " + ", ".join(repr(value) for value in typing.get_args(hint))
    if typing.get_origin(hint) is None:
        return getattr(hint, "__name__", str(hint))
    return str(hint).replace("typing.", "")


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _suggestion(key: str, parameters: Mapping[str, Any]) -> str:
    close = difflib.get_close_matches(key, parameters, n=1)
    if close:
        return f"; did you mean {close[0]!r}?"
    return f"; it takes {', '.join(sorted(parameters))}"
