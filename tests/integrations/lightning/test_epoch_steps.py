"""One step per evaluation epoch: its scalars, its reliability diagram and its table, read back from a real store."""

from __future__ import annotations

import re

import pytorch_lightning as pl
from mlflow.tracking import MlflowClient

from tests.integrations.lightning.tiny_models import TinyClassifier, fit_kwargs, make_loader, metric_history
from xent_plugin import XentMonitor


def image_steps(logger, key: str) -> list[int]:
    """The steps of the full-size images of ``key``, sorted, one per image (MLflow 3 names them
    ``images/<key with / as ~>+step+<step>+timestamp+...png``)."""
    client = MlflowClient(tracking_uri=logger._tracking_uri)
    pattern = re.compile(rf"^images/{re.escape(key.replace('/', '~'))}\+step\+(\d+)\+.*\.png$")
    paths = [item.path for item in client.list_artifacts(logger.run_id, "images")]
    return sorted(int(match[1]) for path in paths if (match := pattern.match(path)))


def table_steps(logger, key: str) -> list[int]:
    client = MlflowClient(tracking_uri=logger._tracking_uri)
    paths = [item.path for item in client.list_artifacts(logger.run_id, f"reliability/{key}")]
    return sorted(int(match[1]) for path in paths if (match := re.search(r"step_(\d+)\.json$", path)))


def scalar_steps(logger, key: str) -> list[int]:
    return [step for step, _ in metric_history(logger, key)]


def test_each_validation_epochs_scalars_diagram_and_table_share_its_step(mlflow_logger):
    trainer = pl.Trainer(logger=mlflow_logger, callbacks=[XentMonitor()], **fit_kwargs(max_epochs=3))
    trainer.fit(TinyClassifier(), make_loader(64), make_loader(40, seed=1))

    steps = scalar_steps(mlflow_logger, "val/cross_entropy")
    # Lightning's step for an epoch's values: the training steps before the epoch's last (8 batches per epoch).
    assert steps == [7, 15, 23]
    assert image_steps(mlflow_logger, "val/reliability") == steps
    assert table_steps(mlflow_logger, "val/reliability") == steps
    assert set(steps) <= set(scalar_steps(mlflow_logger, "epoch"))  # where Lightning puts the epoch's values


def test_validations_outside_fit_and_repeated_tests_each_keep_their_own_step_and_diagram(mlflow_logger):
    trainer = pl.Trainer(logger=mlflow_logger, callbacks=[XentMonitor()], **fit_kwargs(max_epochs=2))
    model, train, val = TinyClassifier(), make_loader(64), make_loader(40, seed=1)
    trainer.validate(model, val)
    trainer.validate(model, val)
    trainer.fit(model, train, val)
    trainer.validate(model, val)
    trainer.test(model, val)
    trainer.test(model, val)

    # Lightning alone would log both validations before the fit at step 0, and both tests at step 16.
    assert scalar_steps(mlflow_logger, "val/cross_entropy") == [0, 1, 7, 15, 16]
    assert image_steps(mlflow_logger, "val/reliability") == [0, 1, 7, 15, 16]
    assert table_steps(mlflow_logger, "val/reliability") == [0, 1, 7, 15, 16]
    assert scalar_steps(mlflow_logger, "test/cross_entropy") == [16, 17]
    assert image_steps(mlflow_logger, "test/reliability") == [16, 17]


def test_every_nth_validation_is_drawn_then_the_last_and_the_best_at_the_end_of_the_fit(mlflow_logger):
    monitor = XentMonitor(figures_every_n_epochs=3)
    trainer = pl.Trainer(logger=mlflow_logger, callbacks=[monitor], **fit_kwargs(max_epochs=5))
    trainer.fit(TinyClassifier(lr=0.5), make_loader(64), make_loader(40, seed=1))

    history = metric_history(mlflow_logger, "val/cross_entropy")
    steps = [step for step, _ in history]
    best, _ = min(history, key=lambda point: point[1])
    expected = sorted({steps[0], steps[3], steps[4], best})
    assert image_steps(mlflow_logger, "val/reliability") == expected
    assert table_steps(mlflow_logger, "val/reliability") == expected


def test_a_test_outside_fit_is_drawn_whatever_the_interval(mlflow_logger):
    trainer = pl.Trainer(
        logger=mlflow_logger, callbacks=[XentMonitor(figures_every_n_epochs=10)], **fit_kwargs(max_epochs=2)
    )
    model = TinyClassifier()
    trainer.validate(model, make_loader(40, seed=1))
    trainer.test(model, make_loader(40, seed=1))
    assert image_steps(mlflow_logger, "val/reliability") == [0]
    assert image_steps(mlflow_logger, "test/reliability") == [0]
