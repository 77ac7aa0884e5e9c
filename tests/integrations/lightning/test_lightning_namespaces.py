"""XentMonitor under either Lightning namespace: ``pytorch_lightning`` and the unified ``lightning.pytorch``.

A real fit under each namespace's Trainer, logging to that namespace's own ``MLFlowLogger`` or to our
``ResilientMLFlowLogger``, gets every epoch's scalars, reliability diagrams and tables.
"""

from __future__ import annotations

import importlib

import pytest
from mlflow.tracking import MlflowClient

from tests.integrations.lightning.tiny_models import fit_kwargs, make_loader, tiny_classifier_class
from xent_plugin import XentMonitor
from xent_plugin.integrations.mlflow import ResilientMLFlowLogger

NAMESPACES = ["pytorch_lightning", "lightning.pytorch"]
EPOCHS = 2


@pytest.fixture(params=NAMESPACES)
def lightning(request):
    """The Lightning package of the parameter: ``pytorch_lightning`` or ``lightning.pytorch``."""
    return importlib.import_module(request.param)


def fit_and_read_back(lightning, logger, tracking_uri: str, directory) -> tuple[MlflowClient, str]:
    checkpoint = lightning.callbacks.ModelCheckpoint(monitor="val/cross_entropy", mode="min")
    trainer = lightning.Trainer(
        logger=logger,
        callbacks=[XentMonitor(), checkpoint],
        default_root_dir=directory,
        **fit_kwargs(max_epochs=EPOCHS, enable_checkpointing=True),
    )
    model = tiny_classifier_class(lightning.LightningModule)()
    trainer.fit(model, make_loader(32), make_loader(24, seed=1))
    trainer.test(model, make_loader(16, seed=2))
    assert checkpoint.best_model_score is not None  # the monitor saw the key
    return MlflowClient(tracking_uri), logger.run_id


def assert_every_epoch_arrived(client: MlflowClient, run_id: str) -> None:
    for key in ("val/cross_entropy", "val/ece", "val/accuracy"):
        assert len(client.get_metric_history(run_id, key)) == EPOCHS
    val_steps = sorted(point.step for point in client.get_metric_history(run_id, "val/cross_entropy"))
    (test_point,) = client.get_metric_history(run_id, "test/cross_entropy")
    images = [item.path for item in client.list_artifacts(run_id, "images") if item.path.endswith(".png")]
    assert sorted((path.split("+")[0], int(path.split("+")[2])) for path in images) == sorted(
        [("images/test~reliability", test_point.step)] + [("images/val~reliability", step) for step in val_steps]
    )
    tables = [item.path for item in client.list_artifacts(run_id, "reliability/val/reliability")]
    assert tables == [f"reliability/val/reliability/step_{step:06d}.json" for step in val_steps]


def test_a_fit_with_the_namespaces_own_mlflow_logger_gets_scalars_diagrams_and_tables(
    lightning, tracking_uri, request, tmp_path
):
    logger = lightning.loggers.MLFlowLogger(
        experiment_name=request.node.name, tracking_uri=tracking_uri, artifact_location=tmp_path.as_uri()
    )
    client, run_id = fit_and_read_back(lightning, logger, tracking_uri, tmp_path)
    assert_every_epoch_arrived(client, run_id)


def test_a_fit_with_the_resilient_logger_gets_scalars_diagrams_and_tables(lightning, tracking_uri, request, tmp_path):
    logger = ResilientMLFlowLogger(
        experiment_name=request.node.name, tracking_uri=tracking_uri, artifact_location=tmp_path.as_uri()
    )
    client, run_id = fit_and_read_back(lightning, logger, tracking_uri, tmp_path)
    assert_every_epoch_arrived(client, run_id)
    assert client.get_run(run_id).info.status == "FINISHED"
