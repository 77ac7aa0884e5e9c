"""The MLflow side of one ``xent-train`` run: the resolved config as params and artifact, and the closing line.

Everything here runs on global rank 0 only, so a DDP run records its config once, in its one MLflow run.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from mlflow.utils.validation import MAX_TAG_VAL_LENGTH
from pytorch_lightning.loggers import MLFlowLogger
from pytorch_lightning.utilities.rank_zero import rank_zero_only

from xent_plugin.integrations.mlflow.loggers import outbox_for
from xent_plugin.integrations.mlflow.params import param_key, param_value


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
            params[param_key(key)] = param_value(node)

    visit(config, "")
    return params


def log_config(logger: Any, config: Mapping[str, Any], config_yaml: str, overrides: Iterable[str]) -> None:
    """Queue the resolved config for the logger's run: params, ``config.yaml``, and the overrides as a tag.

    It goes through the run's :class:`~xent_plugin.integrations.mlflow.outbox.Outbox`, so a tracking server
    that is down now gets it when it comes back (or it is spooled). A resumed run (a logger given ``run_id``)
    already has params, which MLflow never changes: those with a new value are kept and named in a warning, and
    this config goes to ``config_resume_<n>.yaml`` beside the first.
    """
    if rank_zero_only.rank != 0:
        return
    outbox = outbox_for(logger)
    if outbox is None:
        raise TypeError(f"`logger` must be an MLflow logger, got {type(logger).__name__}.")
    overrides_tag = param_value(" ".join(overrides), limit=MAX_TAG_VAL_LENGTH)
    outbox.log_config(config_params(config), config_yaml, overrides_tag)


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
        # MLflow 3's UI opens in its GenAI mode unless the address asks for model training.
        page = f"{tracking_uri.rstrip('/')}/#/experiments/{logger.experiment_id}/runs/{run_id}"
        return f"{where}; review it at {page}?workflowType=machine_learning"
    return f"{where}; review it with: mlflow ui --backend-store-uri {tracking_uri}"


_SUMMARY_METRICS = ("accuracy", "cross_entropy")
