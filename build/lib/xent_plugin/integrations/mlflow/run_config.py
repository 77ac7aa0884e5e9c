"""The MLflow side of one ``xent-train`` run: the resolved config as params and artifact, and the closing line.

Everything here runs on global rank 0 only, so a DDP run records its config once, in its one MLflow run.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from mlflow.entities import Param
from pytorch_lightning.loggers import MLFlowLogger
from pytorch_lightning.utilities.rank_zero import rank_zero_only

# MLflow's limits (mlflow.utils.validation): a param key of at most 250 characters, a value of at most 6000,
# and at most 100 params in one log_batch call.
MAX_PARAM_KEY_LENGTH = 250
MAX_PARAM_VALUE_LENGTH = 6000
MAX_PARAMS_PER_BATCH = 100
CONFIG_ARTIFACT = "config.yaml"

_TRUNCATED = "... (truncated; the whole value is in config.yaml)"


def config_params(config: Mapping[str, Any]) -> dict[str, str]:
    """Flatten a resolved config to MLflow params: dotted keys as on the command line, values in override syntax.

    Lists stay whole (``[16, 32]``), so ``model.net.channels=[16, 32]`` on the command line reproduces the
    value. Keys longer than MLflow allows are cut and suffixed with a hash of the whole key, so they stay
    distinct; values longer than MLflow allows are cut with a note that the artifact has them.

    Example:
        >>> config_params({"model": {"net": {"channels": [16, 32], "task": None}}, "seed": 0})
        {'model.net.channels': '[16, 32]', 'model.net.task': 'null', 'seed': '0'}
    """
    params: dict[str, str] = {}

    def visit(node: Any, key: str) -> None:
        if isinstance(node, Mapping) and node:
            for child_key, child in node.items():
                visit(child, f"{key}.{child_key}" if key else str(child_key))
        else:
            params[_param_key(key)] = _param_value(node)

    visit(config, "")
    return params


def log_config(logger: MLFlowLogger, config: Mapping[str, Any], config_yaml: str, overrides: Iterable[str]) -> None:
    """Send the resolved config to the logger's run as params, as ``config.yaml`` and the overrides as a tag.

    A resumed run (``logger.run_id`` set) already has params, which MLflow never changes: those with a new
    value are kept and named in a warning, and this config goes to ``config_resume_<n>.yaml`` beside the first.
    A tracking failure warns and lets training go on.
    """
    if rank_zero_only.rank != 0:
        return
    try:
        _log_config(logger, config, config_yaml, overrides)
    except Exception as error:  # noqa: BLE001 - the run is worth more than its record
        warnings.warn(
            f"xent-train: could not log the config to MLflow ({type(error).__name__}: {error}); training goes on.",
            UserWarning,
            stacklevel=2,
        )


def _log_config(logger: MLFlowLogger, config: Mapping[str, Any], config_yaml: str, overrides: Iterable[str]) -> None:
    client, run_id = logger.experiment, logger.run_id
    logged = client.get_run(run_id).data.params
    params = config_params(config)
    changed = sorted(key for key, value in params.items() if key in logged and logged[key] != value)
    if changed:
        warnings.warn(
            f"xent-train: run {run_id} already has params {', '.join(changed)} with other values; MLflow keeps the "
            "first values, and this run's config is in its own config_resume_<n>.yaml artifact.",
            UserWarning,
            stacklevel=3,
        )
    new = [Param(key, value) for key, value in params.items() if key not in logged]
    for start in range(0, len(new), MAX_PARAMS_PER_BATCH):
        client.log_batch(run_id, params=new[start : start + MAX_PARAMS_PER_BATCH])
    client.set_tag(run_id, "xent_train.overrides", " ".join(overrides)[:MAX_PARAM_VALUE_LENGTH])
    name = CONFIG_ARTIFACT
    if logged:
        earlier = [item.path for item in client.list_artifacts(run_id) if item.path.startswith("config")]
        name = f"config_resume_{len(earlier)}.yaml"
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / name
        path.write_text(config_yaml)
        client.log_artifact(run_id, str(path))


def summary_line(logger: MLFlowLogger, tracking_uri: str, metrics: Mapping[str, Any]) -> str:
    """One line that says where the run is, how it scored, and how to look at it.

    For a local store that is the ``mlflow ui`` command to run; for a tracking server, the run's page.
    """
    try:
        client, run_id = logger.experiment, logger.run_id
        experiment = client.get_experiment(logger.experiment_id).name
    except Exception as error:  # noqa: BLE001 - the closing line must not fail a finished run
        return f"No MLflow run could be read back from {tracking_uri} ({type(error).__name__}); see the warnings."
    stage = "test" if f"test/{_SUMMARY_METRICS[0]}" in metrics else "val"
    keys = [f"{stage}/{name}" for name in _SUMMARY_METRICS if f"{stage}/{name}" in metrics]
    shown = [f"{key}={float(metrics[key]):.4f}" for key in keys]
    where = f"MLflow run {run_id} in experiment {experiment!r}" + (f" ({', '.join(shown)})" if shown else "")
    if tracking_uri.startswith(("http://", "https://")):
        return f"{where}; review it at {tracking_uri.rstrip('/')}/#/experiments/{logger.experiment_id}/runs/{run_id}"
    return f"{where}; review it with: mlflow ui --backend-store-uri {tracking_uri}"


_SUMMARY_METRICS = ("accuracy", "cross_entropy")


def _param_key(key: str) -> str:
    if len(key) <= MAX_PARAM_KEY_LENGTH:
        return key
    digest = hashlib.sha1(key.encode()).hexdigest()[:8]
    return f"{key[: MAX_PARAM_KEY_LENGTH - len(digest) - 1]}~{digest}"


def _param_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    if len(text) <= MAX_PARAM_VALUE_LENGTH:
        return text
    return text[: MAX_PARAM_VALUE_LENGTH - len(_TRUNCATED)] + _TRUNCATED
