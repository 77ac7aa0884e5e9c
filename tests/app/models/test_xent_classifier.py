import functools

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn

from xent_plugin.app.data import BreastCancerDataModule
from xent_plugin.app.models import LogisticRegression, TinyGRU, XentClassifier

SGD = functools.partial(torch.optim.SGD, lr=0.1)


def test_multiclass_loss_equals_cross_entropy_on_the_same_batch():
    model = XentClassifier(nn.Linear(6, 4), SGD)
    batch = {"x": torch.randn(10, 6), "y": torch.randint(4, (10,))}
    expected = F.cross_entropy(model.net(batch["x"]), batch["y"])
    torch.testing.assert_close(model.step(batch)["loss"], expected)


def test_token_loss_averages_over_unpadded_tokens_only():
    model = XentClassifier(TinyGRU(vocab_size=7), SGD)
    y = torch.randint(7, (3, 5))
    y[0, 3:] = -100
    batch = {"x": torch.randint(7, (3, 5)), "y": y}
    logits = model.net(batch["x"])
    expected = F.cross_entropy(logits.transpose(1, 2), y, ignore_index=-100)
    torch.testing.assert_close(model.step(batch)["loss"], expected)


def test_binary_loss_is_the_bernoulli_log_loss_of_the_single_logit():
    model = XentClassifier(LogisticRegression(5, 2, task="binary"), SGD, task="binary")
    batch = {"x": torch.randn(8, 5), "y": torch.tensor([0, 1, 1, 0, 1, 0, 0, 1])}
    p = torch.sigmoid(model.net(batch["x"]))
    expected = -(batch["y"] * p.log() + (1 - batch["y"]) * (1 - p).log()).mean()
    torch.testing.assert_close(model.step(batch)["loss"], expected)


def test_evaluation_steps_pass_the_reference_distribution_on():
    model = XentClassifier(nn.Linear(3, 2), SGD)
    model.log = lambda *args, **kwargs: None
    batch = {"x": torch.randn(4, 3), "y": torch.tensor([0, 1, 0, 1]), "probs": torch.full((4, 2), 0.5)}
    output = model.validation_step(batch, 0)
    assert set(output) == {"loss", "logits", "target", "reference"}
    assert output["reference"] is batch["probs"]
    del batch["probs"]
    assert set(model.test_step(batch, 0)) == {"loss", "logits", "target"}


def test_training_step_returns_detached_logits():
    model = XentClassifier(nn.Linear(3, 2), SGD)
    model.log = lambda *args, **kwargs: None
    output = model.training_step({"x": torch.randn(4, 3), "y": torch.tensor([0, 1, 0, 1])}, 0)
    assert set(output) == {"loss", "logits", "target"}
    assert output["loss"].requires_grad and not output["logits"].requires_grad


def test_configure_optimizers_builds_the_optimizer_and_scheduler_from_the_factories():
    scheduler = functools.partial(torch.optim.lr_scheduler.StepLR, step_size=2)
    config = XentClassifier(nn.Linear(3, 2), SGD, scheduler).configure_optimizers()
    assert isinstance(config["optimizer"], torch.optim.SGD) and config["optimizer"].defaults["lr"] == 0.1
    assert isinstance(config["lr_scheduler"]["scheduler"], torch.optim.lr_scheduler.StepLR)
    assert config["lr_scheduler"]["scheduler"].optimizer is config["optimizer"]


def test_training_without_an_optimizer_names_the_argument():
    with pytest.raises(ValueError, match="`optimizer`"):
        XentClassifier(nn.Linear(3, 2)).configure_optimizers()


@pytest.mark.parametrize(
    ("kwargs", "argument"), [({"task": "regression"}, "task"), ({"ignore_index": 0.5}, "ignore_index")]
)
def test_bad_arguments_name_the_argument(kwargs, argument):
    with pytest.raises(ValueError, match=f"`{argument}`"):
        XentClassifier(nn.Linear(3, 2), SGD, **kwargs)


def test_checkpoint_reloads_with_the_network_passed_again(tmp_path):
    pl.seed_everything(0)
    model = XentClassifier(LogisticRegression(30, 2, task="binary"), SGD, task="binary")
    trainer = pl.Trainer(
        max_epochs=1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, datamodule=BreastCancerDataModule(batch_size=64, seed=0))
    trainer.save_checkpoint(tmp_path / "model.ckpt")

    restored = XentClassifier.load_from_checkpoint(
        tmp_path / "model.ckpt", net=LogisticRegression(30, 2, task="binary")
    )

    assert restored.task == "binary" and restored.ignore_index == -100
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(restored.state_dict()[name], tensor)
