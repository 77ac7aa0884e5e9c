"""xent-train tags its experiment as model training through the logger's outbox, and keeps a kind set already."""

from __future__ import annotations

from mlflow.tracking import MlflowClient

from xent_plugin.app.train import EXPERIMENT_KIND_TAG, MODEL_TRAINING, _mark_experiment_as_model_training
from xent_plugin.integrations.mlflow import ResilientMLFlowLogger


def _logger(tmp_path, name: str) -> ResilientMLFlowLogger:
    return ResilientMLFlowLogger(
        experiment_name=name,
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        artifact_location=(tmp_path / "artifacts").as_uri(),
    )


def test_an_untagged_experiment_is_tagged_as_model_training(tmp_path):
    logger = _logger(tmp_path, "untagged")
    _mark_experiment_as_model_training(logger)
    assert logger.flush(timeout_s=60)
    experiment = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").get_experiment(logger.experiment_id)
    assert experiment.tags[EXPERIMENT_KIND_TAG] == MODEL_TRAINING


def test_a_kind_the_experiment_has_already_is_kept(tmp_path):
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment_id = client.create_experiment("genai", artifact_location=(tmp_path / "artifacts").as_uri())
    client.set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, "genai_development")
    logger = _logger(tmp_path, "genai")
    _mark_experiment_as_model_training(logger)
    assert logger.flush(timeout_s=60)
    assert client.get_experiment(experiment_id).tags[EXPERIMENT_KIND_TAG] == "genai_development"
