"""Exact-once evaluation: a 2-process DDP fit logs exactly the single-device values on a prime-sized set."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from mlflow.tracking import MlflowClient

from tests.integrations.lightning.tiny_models import TinyClassifier, fit_kwargs, make_loader
from xent_plugin import XentMonitor
from xent_plugin.integrations.mlflow import ResilientMLFlowLogger

VALUES = ("cross_entropy", "entropy", "brier_score", "accuracy", "ece", "mce", "rmsce", "kl", "reference_entropy")


def _run(tmp_path, name: str, **trainer_options) -> dict[str, float]:
    torch.manual_seed(0)
    model = TinyClassifier(with_reference=True, lr=0.0)  # lr 0: both runs evaluate the same weights
    logger = ResilientMLFlowLogger(
        experiment_name=name,
        tracking_uri=f"sqlite:///{tmp_path / name}.db",
        artifact_location=(tmp_path / f"{name}_artifacts").as_uri(),
    )
    trainer = pl.Trainer(logger=logger, callbacks=[XentMonitor()], **fit_kwargs(max_epochs=1, **trainer_options))
    trainer.fit(model, make_loader(20, with_reference=True), make_loader(37, with_reference=True, batch_size=4))
    # Under ddp_spawn the run is created in the rank-0 worker, so find it in the store rather than via `logger`.
    client = MlflowClient(tracking_uri=logger._tracking_uri)
    (run,) = client.search_runs([client.get_experiment_by_name(name).experiment_id])
    return {name: client.get_metric_history(run.info.run_id, f"val/{name}")[0].value for name in VALUES}


@pytest.mark.slow
def test_two_process_ddp_logs_the_single_device_values(tmp_path):
    single = _run(tmp_path, "single")
    distributed = _run(tmp_path, "ddp", strategy="ddp_spawn", devices=2)
    for name in VALUES:
        assert distributed[name] == pytest.approx(single[name], rel=1e-6, abs=1e-12), name
