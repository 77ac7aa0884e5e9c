"""The resolved config reaches the MLflow run as params within MLflow's limits, and as config.yaml."""

from __future__ import annotations

import pytest
import yaml
from mlflow.tracking import MlflowClient
from mlflow.utils.validation import MAX_ENTITY_KEY_LENGTH as MAX_PARAM_KEY_LENGTH
from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH as MAX_PARAM_VALUE_LENGTH

from xent_plugin.integrations.mlflow import ResilientMLFlowLogger
from xent_plugin.integrations.mlflow.run_config import (
    config_params,
    log_config,
    summary_line,
)

# Creating MLflow's tables in a new SQLite store takes several seconds; the module shares one store.
slow_store = pytest.mark.slow


@pytest.fixture(scope="module")
def tracking_uri(tmp_path_factory) -> str:
    # Each test gets a run of its own in it.
    return f"sqlite:///{tmp_path_factory.mktemp('store') / 'mlflow.db'}"


@pytest.fixture
def logger(tmp_path, tracking_uri) -> ResilientMLFlowLogger:
    return ResilientMLFlowLogger(
        experiment_name="config", tracking_uri=tracking_uri, artifact_location=str(tmp_path / "artifacts")
    )


def test_params_are_dotted_paths_with_values_in_override_syntax():
    config = {"model": {"net": {"hidden_dims": [64, 32], "dropout": 0.1}, "scheduler": None}, "test": True}

    assert config_params(config) == {
        "model.net.hidden_dims": "[64, 32]",
        "model.net.dropout": "0.1",
        "model.scheduler": "null",
        "test": "true",
    }


def test_empty_sections_are_kept_as_params():
    assert config_params({"callbacks": {}, "name": "x"}) == {"callbacks": "{}", "name": "x"}


def test_overlong_keys_are_cut_to_the_limit_and_stay_distinct():
    stem = "k" * 300
    params = config_params({f"{stem}a": 1, f"{stem}b": 2})

    assert len(params) == 2
    assert all(len(key) <= MAX_PARAM_KEY_LENGTH for key in params)


def test_overlong_values_are_cut_to_the_limit_with_a_pointer_to_the_artifact():
    (value,) = config_params({"note": "x" * 10_000}).values()

    assert len(value) == MAX_PARAM_VALUE_LENGTH
    assert value.endswith("(truncated; the whole value is in config.yaml)")


@slow_store
def test_more_params_than_one_batch_takes_all_arrive(logger, tracking_uri):
    config = {"group": {f"key_{index:03d}": index for index in range(250)}}

    log_config(logger, config, yaml.safe_dump(config), ["group.key_000=0"])
    assert logger.flush()

    run = MlflowClient(tracking_uri).get_run(logger.run_id)
    assert run.data.params == {f"group.key_{index:03d}": str(index) for index in range(250)}
    assert run.data.tags["xent_train.overrides"] == "group.key_000=0"


@slow_store
def test_the_config_artifact_is_the_resolved_yaml(logger, tracking_uri, tmp_path):
    config = {"model": {"lr": 0.01}}

    log_config(logger, config, yaml.safe_dump(config), [])
    assert logger.flush()

    client = MlflowClient(tracking_uri)
    path = client.download_artifacts(logger.run_id, "config.yaml", str(tmp_path))
    assert yaml.safe_load(open(path)) == config


@slow_store
def test_a_resumed_run_keeps_its_first_params_and_gets_the_new_config_beside_the_first(logger, tracking_uri, tmp_path):
    log_config(logger, {"lr": 0.1}, "lr: 0.1\n", [])
    assert logger.flush()
    resumed = ResilientMLFlowLogger(tracking_uri=tracking_uri, run_id=logger.run_id)

    with pytest.warns(UserWarning, match=r"already has params lr with other values"):
        log_config(resumed, {"lr": 0.2, "ckpt_path": "last.ckpt"}, "lr: 0.2\n", [])
        assert resumed.flush()

    client = MlflowClient(tracking_uri)
    assert client.get_run(logger.run_id).data.params == {"lr": "0.1", "ckpt_path": "last.ckpt"}
    assert sorted(item.path for item in client.list_artifacts(logger.run_id)) == [
        "config.yaml",
        "config_resume_1.yaml",
    ]


@slow_store
def test_the_summary_names_the_run_and_the_command_that_opens_the_ui(logger, tracking_uri):
    line = summary_line(logger, tracking_uri, {"test/accuracy": 0.975, "test/cross_entropy": 0.1, "val/ece": 0.2})

    assert line == (
        f"MLflow run {logger.run_id} in experiment 'config' (test/accuracy=0.9750, test/cross_entropy=0.1000); "
        f"review it with: mlflow ui --backend-store-uri {tracking_uri}"
    )
