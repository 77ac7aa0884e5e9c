"""The reliability tables of a real fit, read back as MLflow tables: ``load_table`` on a real SQLite store gives
the epoch's bins, and the run's ``mlflow.loggedArtifacts`` tag lists every table once, also after a resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
import pytorch_lightning as pl

from tests.integrations.lightning.tiny_models import TinyClassifier, concat, fit_kwargs, make_loader
from xent_plugin import XentMonitor
from xent_plugin.integrations.mlflow import ResilientMLFlowLogger
from xent_plugin.integrations.mlflow.artifacts import reliability_table_path, smooth_curve_table_path

BIN_COLUMNS = ["lower", "upper", "count", "confidence", "accuracy"]
CURVE_COLUMNS = ["confidence", "accuracy", "lower", "upper", "density", "smooth_ece", "bandwidth"]
VAL_SAMPLES = 40


pytestmark = pytest.mark.usefixtures("global_tracking_uri")


def logger_for(client, tmp_path, **options) -> ResilientMLFlowLogger:
    return ResilientMLFlowLogger(
        tracking_uri=client.tracking_uri, artifact_location=(tmp_path / "artifacts").as_uri(), **options
    )


def val_steps(client, run_id) -> list[int]:
    return sorted(point.step for point in client.get_metric_history(run_id, "val/cross_entropy"))


def listed_tables(client, run_id) -> list[str]:
    entries = json.loads(client.get_run(run_id).data.tags["mlflow.loggedArtifacts"])
    assert {entry["type"] for entry in entries} == {"table"}
    return [entry["path"] for entry in entries]


def table_files(client, run_id, directory="reliability") -> list[str]:
    files = []
    for item in client.list_artifacts(run_id, directory):
        files += table_files(client, run_id, item.path) if item.is_dir else [item.path]
    return files


def load(client, run_id, path):
    return client.load_table(client.get_run(run_id).info.experiment_id, path, run_ids=[run_id])


def numpy_bins(logits, target, n_bins: int = 15) -> tuple[np.ndarray, np.ndarray]:
    """Count and accuracy per equal-width bin of the top-label confidence, with NumPy."""
    probabilities = np.exp(logits - logits.max(1, keepdims=True))
    probabilities /= probabilities.sum(1, keepdims=True)
    confidence, correct = probabilities.max(1), probabilities.argmax(1) == target
    index = np.minimum((confidence * n_bins).astype(int), n_bins - 1)
    count = np.bincount(index, minlength=n_bins).astype(float)
    with np.errstate(invalid="ignore"):
        accuracy = np.bincount(index, weights=correct, minlength=n_bins) / count
    return count, accuracy


def test_each_epochs_table_loads_as_an_mlflow_table_with_one_row_per_bin(client, tmp_path):
    logger = logger_for(client, tmp_path, experiment_name="tables-in-a-fit")
    model = TinyClassifier()
    trainer = pl.Trainer(logger=logger, callbacks=[XentMonitor(calibration_estimators=True)], **fit_kwargs())
    trainer.fit(model, make_loader(64), make_loader(VAL_SAMPLES, seed=1))
    steps = val_steps(client, logger.run_id)
    assert len(steps) == 2
    smooth_ece = {point.step: point.value for point in client.get_metric_history(logger.run_id, "val/smooth_ece")}

    for epoch, step in enumerate(steps):
        bins = load(client, logger.run_id, reliability_table_path("val/reliability", step))
        returned = model.returned[f"val/{epoch}"]
        count, accuracy = numpy_bins(concat(returned, "logits").double().numpy(), concat(returned, "target").numpy())
        assert list(bins.columns) == BIN_COLUMNS
        assert bins["lower"].tolist() == pytest.approx(np.linspace(0, 1, 16)[:-1].tolist())
        assert bins["count"].tolist() == count.tolist()
        np.testing.assert_allclose(bins["accuracy"].to_numpy(dtype=float), accuracy)  # NaN where a bin is empty

        curve = load(client, logger.run_id, smooth_curve_table_path("val/reliability", step))
        assert list(curve.columns) == CURVE_COLUMNS
        assert curve["smooth_ece"].nunique() == 1
        assert curve["smooth_ece"].iloc[0] == pytest.approx(smooth_ece[step])

    listed = listed_tables(client, logger.run_id)
    assert sorted(listed) == sorted(table_files(client, logger.run_id))
    assert len(listed) == len(set(listed)) == 3 * len(steps)  # bins, smooth curve, equal-mass bins per epoch


@pytest.mark.slow
def test_after_a_resume_from_an_earlier_epoch_the_tag_lists_every_table_once(client, tmp_path):
    checkpoints = tmp_path / "checkpoints"
    every_epoch = pl.callbacks.ModelCheckpoint(dirpath=checkpoints, filename="{epoch}", save_top_k=-1)
    first = logger_for(client, tmp_path, experiment_name="tables-after-a-resume")
    options = fit_kwargs(enable_checkpointing=True, max_epochs=3, default_root_dir=tmp_path)
    trainer = pl.Trainer(logger=first, callbacks=[XentMonitor(), every_epoch], **options)
    trainer.fit(TinyClassifier(), make_loader(64), make_loader(VAL_SAMPLES, seed=1))
    first_tables = listed_tables(client, first.run_id)
    assert len(first_tables) == 3

    # Resumed from epoch 0's checkpoint: epochs 1 and 2 run again, and their tables are in the run already.
    resumed = logger_for(client, tmp_path, run_id=first.run_id)
    trainer = pl.Trainer(logger=resumed, callbacks=[XentMonitor()], **{**options, "max_epochs": 4})
    with pytest.warns(UserWarning, match="not logging .* again"):
        trainer.fit(
            TinyClassifier(), make_loader(64), make_loader(VAL_SAMPLES, seed=1), ckpt_path=checkpoints / "epoch=0.ckpt"
        )

    steps = val_steps(client, first.run_id)
    assert len(steps) == 4
    listed = listed_tables(client, first.run_id)
    assert listed[:3] == first_tables
    assert listed == [reliability_table_path("val/reliability", step) for step in steps]
    assert sorted(table_files(client, first.run_id)) == sorted(listed)
    for step in steps:
        assert load(client, first.run_id, reliability_table_path("val/reliability", step))["count"].sum() == VAL_SAMPLES
