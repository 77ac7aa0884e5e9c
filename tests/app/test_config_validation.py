"""A `_target_` node is checked against its target's signature before anything is built."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
from hydra.types import RunMode

from xent_plugin.app.config_validation import (
    ConfigError,
    check_strategy_fits_run_mode,
    check_target_arguments,
    check_train_config,
)


def f_with_types(count: int, rate: float = 0.1, name: str | None = None, sizes: tuple[int, int] = (1, 2)) -> None:
    """A target with the annotations the checks read."""


class Base:
    def __init__(self, depth: int = 1) -> None:
        self.depth = depth


class ForwardsKeywords(Base):
    def __init__(self, width: int = 2, **kwargs) -> None:
        super().__init__(**kwargs)


TARGET = f"{__name__}.f_with_types"


def test_arguments_that_match_the_signature_pass():
    assert check_target_arguments("node", {"_target_": TARGET, "count": 3, "rate": 1, "sizes": [4, 5]}) == []


def test_an_unknown_argument_is_named_with_the_closest_parameter():
    problems = check_target_arguments("model.net", {"_target_": TARGET, "count": 1, "rat": 0.5})

    assert problems == [f"model.net.rat: {TARGET} has no parameter 'rat'; did you mean 'rate'?."]


def test_an_argument_of_the_wrong_type_names_the_expected_type_and_the_value():
    problems = check_target_arguments("node", {"_target_": TARGET, "count": "three"})

    assert problems == [f"node.count: {TARGET} expects int, got 'three' (str)."]


@pytest.mark.parametrize(
    ("value", "accepted"), [(True, False), (2.5, False), ([1, 2], True), ([1, 2, 3], False), (["a", 2], False)]
)
def test_types_are_checked_as_annotated(value, accepted):
    key = "count" if not isinstance(value, list) else "sizes"
    problems = check_target_arguments("node", {"_target_": TARGET, "count": 1, key: value})

    assert (problems == []) is accepted


def test_a_missing_required_argument_is_named_unless_the_node_is_partial():
    assert check_target_arguments("node", {"_target_": TARGET}) == [
        f"node: {TARGET} needs 'count', which the config lacks."
    ]
    assert check_target_arguments("node", {"_target_": TARGET, "_partial_": True}) == []


def test_keywords_a_class_forwards_to_its_base_are_checked_against_the_base():
    target = f"{__name__}.ForwardsKeywords"

    assert check_target_arguments("node", {"_target_": target, "depth": 3}) == []
    assert check_target_arguments("node", {"_target_": target, "dept": 3}) == [
        f"node.dept: {target} has no parameter 'dept'; did you mean 'depth'?."
    ]


def test_a_target_that_cannot_be_imported_is_named():
    (problem,) = check_target_arguments("data.datamodule", {"_target_": "xent_plugin.app.data.NoSuchData"})

    assert problem.startswith("data.datamodule._target_: cannot import 'xent_plugin.app.data.NoSuchData'")


def test_the_optimizer_learning_rate_is_checked_before_training(tmp_path):
    from xent_plugin.app.config import compose_config

    cfg = compose_config(["model.optimizer.lr=fast", "+trainer.max_epoch=3"], output_dir=tmp_path)

    with pytest.raises(ConfigError) as error:
        check_train_config(cfg)

    assert error.value.problems == [
        "model.optimizer.lr: torch.optim.Adam expects float or Tensor, got 'fast' (str).",
        "trainer.max_epoch: pytorch_lightning.Trainer has no parameter 'max_epoch'; did you mean 'max_epochs'?.",
    ]


def test_a_strategy_that_relaunches_the_script_is_refused_in_a_sweep():
    trainer = pl.Trainer(strategy="ddp", accelerator="cpu", devices=2, logger=False)

    with pytest.raises(ConfigError, match=r"DDPStrategy \(as in trainer=ddp\) starts this script again for each rank"):
        check_strategy_fits_run_mode(trainer, RunMode.MULTIRUN)
    check_strategy_fits_run_mode(trainer, RunMode.RUN)


def test_a_spawning_strategy_is_allowed_in_a_sweep():
    trainer = pl.Trainer(strategy="ddp_spawn", accelerator="cpu", devices=2, logger=False)

    check_strategy_fits_run_mode(trainer, RunMode.MULTIRUN)
