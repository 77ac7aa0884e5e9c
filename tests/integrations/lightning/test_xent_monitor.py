"""XentMonitor in real Lightning fits, writing to a real SQLite MLflow store and read back with MlflowClient."""

from __future__ import annotations

import json
import math

import pytest
import pytorch_lightning as pl
import torch
from mlflow.tracking import MlflowClient

from tests.integrations.lightning.tiny_models import TinyClassifier, concat, fit_kwargs, make_loader, metric_history
from xent_plugin import XentMonitor
from xent_plugin.functional import brier_score, calibration_error, cross_entropy, entropy, kl_divergence


def _fit(model, logger, monitor, train, val, **overrides):
    trainer = pl.Trainer(logger=logger, callbacks=[monitor], **fit_kwargs(**overrides))
    trainer.fit(model, train, val)
    return trainer


def test_epoch_metrics_equal_the_metrics_of_the_returned_predictions(mlflow_logger):
    model = TinyClassifier()
    _fit(model, mlflow_logger, XentMonitor(), make_loader(64), make_loader(37, seed=1))
    for epoch in range(2):
        returned = model.returned[f"val/{epoch}"]
        logits, target = concat(returned, "logits"), concat(returned, "target")
        expected = {
            "val/cross_entropy": cross_entropy(logits, target),
            "val/entropy": entropy(logits),
            "val/brier_score": brier_score(logits, target),
            "val/ece": calibration_error(logits, target),
            "val/mce": calibration_error(logits, target, norm="max"),
            "val/rmsce": calibration_error(logits, target, norm="l2"),
            "val/accuracy": (logits.argmax(1) == target).double().mean(),
        }
        for key, value in expected.items():
            history = metric_history(mlflow_logger, key)
            assert len(history) == 2, key
            assert history[epoch][1] == pytest.approx(value.item(), rel=1e-6, abs=1e-9), key


def test_reliability_images_and_tables_are_logged_for_every_epoch(mlflow_logger):
    _fit(TinyClassifier(), mlflow_logger, XentMonitor(), make_loader(64), make_loader(40, seed=1), max_epochs=3)
    client = MlflowClient(tracking_uri=mlflow_logger._tracking_uri)
    run_id = mlflow_logger.run_id
    images = [a.path for a in client.list_artifacts(run_id, "images")]
    # MLflow 3 stores log_image(key, step) as images/<key with / as ~>+step+<step>+timestamp+...png
    steps = sorted(int(path.split("+step+")[1].split("+")[0]) for path in images if path.endswith(".png"))
    assert steps == [step for step, _ in metric_history(mlflow_logger, "val/cross_entropy")]
    assert len(steps) == 3
    assert all(path.startswith("images/val~reliability+step+") for path in images)
    tables = sorted(a.path for a in client.list_artifacts(run_id, "reliability/val/reliability"))
    assert len(tables) == 3
    local = client.download_artifacts(run_id, tables[-1])
    with open(local) as file:
        table = json.load(file)
    assert table["columns"][:3] == ["lower", "upper", "count"]
    assert sum(row[2] for row in table["data"]) == 40
    assert len(table["data"]) == 15


def test_decomposition_is_logged_when_batches_carry_a_reference(mlflow_logger):
    model = TinyClassifier(with_reference=True)
    loader = make_loader(30, with_reference=True, seed=2)
    _fit(model, mlflow_logger, XentMonitor(), make_loader(32, with_reference=True), loader, max_epochs=1)
    returned = model.returned["val/0"]
    logits, reference = concat(returned, "logits"), concat(returned, "reference")
    ce = metric_history(mlflow_logger, "val/reference_cross_entropy")[0][1]
    h = metric_history(mlflow_logger, "val/reference_entropy")[0][1]
    kl = metric_history(mlflow_logger, "val/kl")[0][1]
    assert ce == pytest.approx(h + kl, rel=1e-6)  # per-row terms are float32, the sums float64
    assert kl == pytest.approx(kl_divergence(logits, reference).item(), rel=1e-6)
    assert ce == pytest.approx(cross_entropy(logits, reference).item(), rel=1e-6)


def test_binary_task_logs_binary_cross_entropy(mlflow_logger):
    model = TinyClassifier(task="binary")
    _fit(
        model, mlflow_logger, XentMonitor(task="binary"), make_loader(32, task="binary"), make_loader(20, task="binary")
    )
    returned = model.returned["val/1"]
    logits, target = concat(returned, "logits"), concat(returned, "target")
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits.double(), target.double())
    assert metric_history(mlflow_logger, "val/cross_entropy")[1][1] == pytest.approx(expected.item(), rel=1e-6)


def test_test_stage_is_logged_under_test_prefix(mlflow_logger):
    model = TinyClassifier()
    trainer = _fit(model, mlflow_logger, XentMonitor(), make_loader(32), make_loader(16), max_epochs=1)
    trainer.test(model, make_loader(23, seed=5), verbose=False)
    returned = model.returned["test/1"] if "test/1" in model.returned else model.returned["test/0"]
    logits, target = concat(returned, "logits"), concat(returned, "target")
    assert metric_history(mlflow_logger, "test/cross_entropy")[-1][1] == pytest.approx(
        cross_entropy(logits, target).item(), rel=1e-6
    )


def test_training_running_values_are_logged_every_n_steps(mlflow_logger):
    monitor = XentMonitor(log_train=True, train_every_n_steps=2)
    _fit(TinyClassifier(), mlflow_logger, monitor, make_loader(64, batch_size=8), make_loader(16), max_epochs=1)
    assert len(metric_history(mlflow_logger, "train/cross_entropy_step")) == 4
    assert len(metric_history(mlflow_logger, "train/cross_entropy")) == 1


def test_monitor_value_is_available_to_checkpointing(tmp_path, mlflow_logger):
    checkpoint = pl.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", monitor="val/cross_entropy", mode="min")
    trainer = pl.Trainer(
        logger=mlflow_logger, callbacks=[XentMonitor(), checkpoint], **fit_kwargs(enable_checkpointing=True)
    )
    trainer.fit(TinyClassifier(), make_loader(32), make_loader(16))
    assert math.isfinite(checkpoint.best_model_score.item())


def test_step_without_predictions_names_the_keys_it_looked_for(mlflow_logger):
    class NoLogits(TinyClassifier):
        def validation_step(self, batch, batch_idx):
            return {"loss": torch.tensor(0.0)}

    with pytest.raises(ValueError, match=r"expected one of \['log_probs', 'logits', 'probs'\] and 'target'"):
        _fit(NoLogits(), mlflow_logger, XentMonitor(), make_loader(16), make_loader(16), max_epochs=1)


def test_custom_extract_reads_any_output(mlflow_logger):
    class TupleOutputs(TinyClassifier):
        def validation_step(self, batch, batch_idx):
            return (self(batch[0]), batch[1])

    monitor = XentMonitor(extract=lambda outputs, batch: (outputs[0], outputs[1]))
    _fit(TupleOutputs(), mlflow_logger, monitor, make_loader(16), make_loader(16), max_epochs=1)
    assert len(metric_history(mlflow_logger, "val/cross_entropy")) == 1


class NaNAtSecondBatch(TinyClassifier):
    def validation_step(self, batch, batch_idx):
        out = super().validation_step(batch, batch_idx)
        if batch_idx == 1:
            out["logits"] = torch.full_like(out["logits"], float("nan"))
        return out


def test_nan_logits_raise_an_error_naming_the_batch(mlflow_logger):
    with pytest.raises(ValueError, match=r"validate batch 1 \(dataloader 0\).*NaN"):
        _fit(NaNAtSecondBatch(), mlflow_logger, XentMonitor(), make_loader(16), make_loader(24), max_epochs=1)


def test_nan_policy_warn_skips_and_counts_the_batch(mlflow_logger):
    model = NaNAtSecondBatch()
    with pytest.warns(UserWarning, match="skipped validate batch 1"):
        _fit(model, mlflow_logger, XentMonitor(nan_policy="warn"), make_loader(16), make_loader(24), max_epochs=1)
    assert metric_history(mlflow_logger, "val/skipped_batches")[0][1] == 1
    kept = [item for index, item in enumerate(model.returned["val/0"]) if index != 1]
    expected = cross_entropy(concat(kept, "logits"), concat(kept, "target"))
    assert metric_history(mlflow_logger, "val/cross_entropy")[0][1] == pytest.approx(expected.item(), rel=1e-6)


def test_token_layout_logs_perplexity_and_ignores_padding(mlflow_logger):
    class TokenModel(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(11, 11)
            self.returned = []

        def training_step(self, batch, batch_idx):
            logits = self.embed(batch[0])
            return torch.nn.functional.cross_entropy(logits.transpose(1, 2), batch[1], ignore_index=-100)

        def validation_step(self, batch, batch_idx):
            out = {"logits": self.embed(batch[0]), "target": batch[1]}
            self.returned.append({k: v.detach().clone() for k, v in out.items()})
            return out

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    generator = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, 11, (12, 6), generator=generator)
    target = torch.randint(0, 11, (12, 6), generator=generator)
    target[:, 4:] = -100
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(tokens, target), batch_size=4)
    model = TokenModel()
    _fit(model, mlflow_logger, XentMonitor(class_dim=-1, ignore_index=-100), loader, loader, max_epochs=1)
    logits, target = concat(model.returned, "logits"), concat(model.returned, "target")
    expected = torch.nn.functional.cross_entropy(logits.double().transpose(1, 2), target, ignore_index=-100)
    assert metric_history(mlflow_logger, "val/perplexity")[0][1] == pytest.approx(expected.exp().item(), rel=1e-6)


def test_state_dict_round_trip_restores_accumulated_state():
    monitor = XentMonitor()
    monitor.metrics["train"].update(torch.randn(10, 3), torch.randint(0, 3, (10,)))
    restored = XentMonitor()
    restored.load_state_dict(monitor.state_dict())
    assert restored.metrics["train"].count.item() == 10
    assert restored.metrics["train"].cross_entropy == monitor.metrics["train"].cross_entropy


def test_instances_with_different_settings_or_names_have_distinct_state_keys():
    assert XentMonitor(n_bins=10).state_key != XentMonitor(n_bins=20).state_key
    assert XentMonitor(name="a").state_key != XentMonitor(name="b").state_key


def test_bad_options_are_rejected_with_their_name():
    with pytest.raises(ValueError, match="nan_policy"):
        XentMonitor(nan_policy="ignore")
    with pytest.raises(ValueError, match="train_every_n_steps"):
        XentMonitor(train_every_n_steps=0)
    with pytest.raises(ValueError, match="n_bins"):
        XentMonitor(n_bins=0)
    with pytest.raises(ValueError, match="figures_every_n_epochs"):
        XentMonitor(figures_every_n_epochs=0)
    with pytest.raises(ValueError, match=r"`name` must be .* got 'val/x'"):
        XentMonitor(name="val/x")
    with pytest.raises(ValueError, match="`progress_bar` must be a sequence of value names, got the string 'ece'"):
        XentMonitor(progress_bar="ece")


def test_opt_in_estimators_are_logged_with_their_figures(mlflow_logger, monkeypatch):
    from xent_plugin.functional import adaptive_calibration_error, calibration_test, temperature_scan
    from xent_plugin.metrics import BootstrapIntervals, CalibrationEstimators, CalibrationTest, TemperatureScan

    def reads_the_logits_again(self, preds, target):
        raise AssertionError(f"{type(self).__name__} read the logits itself instead of the monitor's pass")

    for extra in (BootstrapIntervals, CalibrationEstimators, CalibrationTest, TemperatureScan):
        monkeypatch.setattr(extra, "update", reads_the_logits_again)
    model = TinyClassifier()
    monitor = XentMonitor(
        calibration_estimators=True, bootstrap_replicates=20, temperature_scan=True, calibration_test=True
    )
    _fit(model, mlflow_logger, monitor, make_loader(64), make_loader(40, seed=1), max_epochs=1)
    returned = model.returned["val/0"]
    logits, target = concat(returned, "logits"), concat(returned, "target")

    def logged(name):
        (point,) = metric_history(mlflow_logger, f"val/{name}")
        return point[1]

    assert logged("adaptive_ece") == pytest.approx(adaptive_calibration_error(logits, target).item(), rel=1e-6)
    assert logged("temperature") == pytest.approx(temperature_scan(logits, target)["temperature"].item(), rel=1e-6)
    assert logged("miscalibration") == pytest.approx(logged("cross_entropy") - logged("calibrated_nll"), abs=1e-6)
    assert logged("cross_entropy_lower") <= logged("cross_entropy") <= logged("cross_entropy_upper")
    test = calibration_test(logits, target)
    assert logged("calibration_p_value") == pytest.approx(test["p_value"].item(), rel=1e-6)
    assert logged("calibration_l2_upper") == pytest.approx(test["l2_upper"].item(), rel=1e-6)
    for name in ("smooth_ece", "debiased_rmsce", "adaptive_ece_bound", "ece_lower", "ece_upper"):
        assert math.isfinite(logged(name)), name
    client = MlflowClient(tracking_uri=mlflow_logger._tracking_uri)
    images = [a.path for a in client.list_artifacts(mlflow_logger.run_id, "images") if a.path.endswith(".png")]
    (step, _), *_ = metric_history(mlflow_logger, "val/cross_entropy")
    assert any(path.startswith(f"images/val~reliability_equal_mass+step+{step}+") for path in images)


class AllNaN(TinyClassifier):
    def validation_step(self, batch, batch_idx):
        out = super().validation_step(batch, batch_idx)
        out["logits"] = torch.full_like(out["logits"], float("nan"))
        return out


def test_a_fully_skipped_epoch_logs_nan_so_a_checkpoint_monitor_finds_its_key(mlflow_logger, tmp_path):
    checkpoint = pl.callbacks.ModelCheckpoint(dirpath=tmp_path, monitor="val/cross_entropy")
    trainer = pl.Trainer(
        logger=mlflow_logger,
        callbacks=[XentMonitor(nan_policy="warn"), checkpoint],
        **fit_kwargs(max_epochs=1, enable_checkpointing=True),
    )
    with pytest.warns(UserWarning, match=r"every val batch was skipped this epoch \(3 with NaN.*logging NaN for"):
        trainer.fit(AllNaN(), make_loader(16), make_loader(24))
    assert math.isnan(trainer.callback_metrics["val/cross_entropy"])
    assert math.isnan(metric_history(mlflow_logger, "val/ece")[0][1])
    assert metric_history(mlflow_logger, "val/skipped_batches")[0][1] == 3


class Returning(TinyClassifier):
    def __init__(self, change):
        super().__init__()
        self.change = change

    def validation_step(self, batch, batch_idx):
        return self.change(super().validation_step(batch, batch_idx))


@pytest.mark.parametrize(
    ("monitor", "change", "message"),
    [
        (XentMonitor(), lambda out: {**out, "logits": None}, r"the validate step's 'logits' is NoneType"),
        (XentMonitor(), lambda out: {**out, "target": out["target"].tolist()}, r"the validate step's 'target' is list"),
        (XentMonitor(), lambda out: {**out, "reference": [0.5]}, r"the validate step's 'reference' is list"),
        (
            XentMonitor(extract=lambda outputs, batch: (outputs["logits"], {"y": outputs["target"]})),
            lambda out: out,
            r"`extract` returned target is dict",
        ),
        (
            XentMonitor(extract=lambda outputs, batch: outputs),
            lambda out: out,
            r"`extract` must return \(preds, target\) or \(preds, target, reference\), got dict",
        ),
    ],
    ids=["logits_none", "target_list", "reference_list", "extract_target_dict", "extract_dict"],
)
def test_a_step_output_that_is_not_tensors_names_the_key_and_the_type(mlflow_logger, monitor, change, message):
    with pytest.raises((TypeError, ValueError), match=message):
        _fit(Returning(change), mlflow_logger, monitor, make_loader(16), make_loader(16), max_epochs=1)


def test_float64_reference_beside_float32_logits_is_monitored(mlflow_logger):
    model = TinyClassifier(with_reference=True)
    loader = make_loader(24, with_reference=True)
    x, y, reference = loader.dataset.tensors
    double = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y, reference.double()), batch_size=8)
    _fit(model, mlflow_logger, XentMonitor(), make_loader(16, with_reference=True), double, max_epochs=1)
    returned = model.returned["val/0"]
    expected = kl_divergence(concat(returned, "logits"), concat(returned, "reference"))
    assert metric_history(mlflow_logger, "val/kl")[0][1] == pytest.approx(expected.item(), rel=1e-5)


def test_a_step_returning_hidden_states_and_the_head_is_monitored_without_logits(mlflow_logger):
    from xent_plugin.functional import calibration_test

    class HiddenStateModel(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(11, 4)
            self.head = torch.nn.Linear(4, 11)
            self.returned = []

        def training_step(self, batch, batch_idx):
            logits = self.head(self.embed(batch[0]))
            return torch.nn.functional.cross_entropy(logits.transpose(1, 2), batch[1], ignore_index=-100)

        def validation_step(self, batch, batch_idx):
            hidden = self.embed(batch[0])
            self.returned.append({"logits": self.head(hidden).detach().clone(), "target": batch[1]})
            return {"hidden": hidden, "head_weight": self.head.weight, "head_bias": self.head.bias, "target": batch[1]}

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    generator = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, 11, (12, 6), generator=generator)
    target = torch.randint(0, 11, (12, 6), generator=generator)
    target[:, 4:] = -100
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(tokens, target), batch_size=4)
    model = HiddenStateModel()
    monitor = XentMonitor(class_dim=-1, ignore_index=-100, calibration_test=True)
    _fit(model, mlflow_logger, monitor, loader, loader, max_epochs=1)
    logits, target = concat(model.returned, "logits"), concat(model.returned, "target")
    test = calibration_test(logits, target, class_dim=-1, ignore_index=-100)
    expected = {
        "val/cross_entropy": cross_entropy(logits, target, class_dim=-1, ignore_index=-100),
        "val/ece": calibration_error(logits, target, class_dim=-1, ignore_index=-100),
        "val/calibration_l2": test["l2"],
        "val/calibration_p_value": test["p_value"],
    }
    for key, value in expected.items():
        assert metric_history(mlflow_logger, key)[0][1] == pytest.approx(value.item(), rel=1e-6, abs=1e-9), key
