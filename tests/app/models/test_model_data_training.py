import functools
import math

import pytest
import pytorch_lightning as pl
import torch

from xent_plugin.app.data import BreastCancerDataModule, DigitsDataModule, MarkovDataModule, SyntheticDataModule
from xent_plugin.app.models import MLP, LogisticRegression, SmallCNN, TinyGRU, TinyTransformer, XentClassifier

ADAM = functools.partial(torch.optim.Adam, lr=1e-2)


def _trainer(**kwargs) -> pl.Trainer:
    return pl.Trainer(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **kwargs,
    )


def _digits_cnn():
    return XentClassifier(SmallCNN(in_channels=1, num_classes=10), ADAM), DigitsDataModule(batch_size=32)


def _breast_cancer_logistic_regression():
    datamodule = BreastCancerDataModule(batch_size=32)
    net = LogisticRegression(datamodule.input_dim, datamodule.num_classes, task=datamodule.task)
    return XentClassifier(net, ADAM, task=datamodule.task), datamodule


def _synthetic_mlp():
    datamodule = SyntheticDataModule(n_samples=400, batch_size=32)
    return XentClassifier(MLP(datamodule.input_dim, [16], datamodule.num_classes), ADAM), datamodule


def _markov_gru():
    datamodule = MarkovDataModule(n_sequences=100, batch_size=16)
    return XentClassifier(TinyGRU(datamodule.vocab_size), ADAM), datamodule


def _markov_transformer():
    datamodule = MarkovDataModule(n_sequences=100, batch_size=16)
    return XentClassifier(TinyTransformer(datamodule.vocab_size, max_len=datamodule.seq_len), ADAM), datamodule


@pytest.mark.parametrize(
    "make_pair",
    [_digits_cnn, _breast_cancer_logistic_regression, _synthetic_mlp, _markov_gru, _markov_transformer],
    ids=["cnn-digits", "logreg-breast_cancer", "mlp-synthetic", "gru-markov", "transformer-markov"],
)
def test_one_batch_of_fit_and_test_runs_and_logs_finite_losses(make_pair):
    model, datamodule = make_pair()
    trainer = _trainer(fast_dev_run=True)
    trainer.fit(model, datamodule=datamodule)
    assert math.isfinite(trainer.callback_metrics["train/loss"])
    assert math.isfinite(trainer.callback_metrics["val/loss"])
    (results,) = trainer.test(model, datamodule=datamodule, verbose=False)
    assert math.isfinite(results["test/loss"])


def test_mlp_on_synthetic_data_approaches_the_bayes_optimal_loss():
    pl.seed_everything(0)
    datamodule = SyntheticDataModule(n_samples=2000, num_classes=4, batch_size=64, seed=0)
    model = XentClassifier(MLP(datamodule.input_dim, [32], datamodule.num_classes), ADAM)
    trainer = _trainer(max_epochs=3)
    trainer.fit(model, datamodule=datamodule)
    val = datamodule.val_set.columns
    bayes_loss = -val["probs"].double().gather(1, val["y"][:, None]).log().mean()
    assert trainer.callback_metrics["val/loss"] < bayes_loss + 0.1
