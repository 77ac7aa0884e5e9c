"""Dispatch a batch to the pass its task needs: softmax statistics for multiclass, sigmoid otherwise."""

from __future__ import annotations

from torch import Tensor

from xent_plugin.functional._validation import check_choice
from xent_plugin.functional.sigmoid_stats import BinaryStats, binary_stats
from xent_plugin.functional.softmax_stats import SufficientStats, sufficient_stats

TASKS = ("multiclass", "binary", "multilabel")


def task_stats(
    preds: Tensor,
    target: Tensor,
    *,
    task: str = "multiclass",
    input_format: str = "logits",
    class_dim: int = 1,
    ignore_index: int | None = None,
    n_bins: int | None = None,
    calibration_mode: str = "top_label",
    validate_args: bool = True,
) -> SufficientStats | BinaryStats:
    """The one pass for ``task``: softmax statistics for multiclass, sigmoid statistics otherwise."""
    if validate_args:
        check_choice("task", task, TASKS)
    if task == "multiclass":
        return sufficient_stats(
            preds,
            target,
            input_format=input_format,
            class_dim=class_dim,
            ignore_index=ignore_index,
            n_bins=n_bins,
            validate_args=validate_args,
        )
    return binary_stats(
        preds,
        target,
        input_format=input_format,
        ignore_index=ignore_index,
        n_bins=n_bins,
        calibration_mode=calibration_mode,
        multilabel=task == "multilabel",
        validate_args=validate_args,
    )
