"""Several XentMonitors on one Trainer, each under its own name; and what the progress bar shows."""

from __future__ import annotations

import json

import pytest
import pytorch_lightning as pl
from mlflow.tracking import MlflowClient

from tests.integrations.lightning.tiny_models import TinyClassifier, concat, fit_kwargs, make_loader, metric_history
from xent_plugin import XentMonitor
from xent_plugin.functional import calibration_error


def _fit(logger, *monitors, **overrides) -> tuple[pl.Trainer, TinyClassifier]:
    model = TinyClassifier()
    trainer = pl.Trainer(logger=logger, callbacks=list(monitors), **fit_kwargs(max_epochs=1, **overrides))
    trainer.fit(model, make_loader(64), make_loader(40, seed=1))
    return trainer, model


def test_two_monitors_with_different_options_and_names_log_side_by_side(mlflow_logger):
    coarse, fine = XentMonitor(n_bins=5, name="coarse"), XentMonitor(n_bins=15, name="fine")
    _, model = _fit(mlflow_logger, coarse, fine)
    returned = model.returned["val/0"]
    logits, target = concat(returned, "logits"), concat(returned, "target")

    for name, n_bins in (("coarse", 5), ("fine", 15)):
        ((_, logged),) = metric_history(mlflow_logger, f"val/{name}/ece")
        assert logged == pytest.approx(calibration_error(logits, target, n_bins=n_bins).item(), rel=1e-6)
        client = MlflowClient(tracking_uri=mlflow_logger._tracking_uri)
        (table,) = client.list_artifacts(mlflow_logger.run_id, f"reliability/val/{name}/reliability")
        with open(client.download_artifacts(mlflow_logger.run_id, table.path)) as file:
            assert len(json.load(file)["data"]) == n_bins  # a row per bin
        images = [item.path for item in client.list_artifacts(mlflow_logger.run_id, "images")]
        assert sum(path.startswith(f"images/val~{name}~reliability+step+") for path in images) == 2  # png, webp
    assert metric_history(mlflow_logger, "val/ece") == []
    assert coarse.state_key != fine.state_key


@pytest.mark.parametrize("names", [(None, None), ("same", "same")])
def test_two_monitors_that_would_write_the_same_keys_are_refused(mlflow_logger, names):
    first, second = XentMonitor(n_bins=15, name=names[0]), XentMonitor(n_bins=5, name=names[1])
    keys = "'val/ece'" if names[0] is None else "'val/same/ece'"
    with pytest.raises(ValueError, match=rf"2 monitors of this Trainer would log the same keys \({keys}.*own `name=`"):
        _fit(mlflow_logger, first, second)


def test_the_progress_bar_shows_the_validation_cross_entropy_and_ece(mlflow_logger):
    trainer, _ = _fit(mlflow_logger, XentMonitor())
    shown = set(trainer.progress_bar_metrics)
    assert {"val/cross_entropy", "val/ece"} <= shown
    assert "val/brier_score" not in shown


def test_the_progress_bar_values_are_configurable(mlflow_logger):
    trainer, _ = _fit(mlflow_logger, XentMonitor(name="m", progress_bar=("accuracy",)))
    shown = set(trainer.progress_bar_metrics)
    assert "val/m/accuracy" in shown
    assert "val/m/ece" not in shown
    assert "val/m/ece" in trainer.callback_metrics
