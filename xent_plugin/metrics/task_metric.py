"""The shared constructor and pass of metrics that serve multiclass, binary and multilabel tasks alike."""

from __future__ import annotations

from torch import Tensor

from xent_plugin.functional._validation import (
    INPUT_FORMATS,
    check_choice,
    check_class_dim,
    check_flag,
    check_ignore_index,
    check_int,
    check_n_bins,
)
from xent_plugin.functional.sigmoid_stats import BINARY_INPUT_FORMATS, CALIBRATION_MODES, BinaryStats
from xent_plugin.functional.softmax_stats import SufficientStats
from xent_plugin.functional.task_stats import TASKS, task_stats
from xent_plugin.metrics.base import SummedStateMetric


class TaskMetric(SummedStateMetric):
    """Holds ``task`` and its input options, validates them once, and runs the task's one pass.

    Args:
        task: ``"multiclass"`` (softmax over ``class_dim``), ``"binary"`` or ``"multilabel"`` (sigmoid per entry).
        input_format: ``"logits"``, ``"probs"``, or for multiclass also ``"log_probs"``.
        class_dim: the class dimension (multiclass only).
        ignore_index: a target value whose positions are not counted.
        calibration_mode: binary and multilabel only, ``"top_label"`` or ``"positive"``.
        num_labels: the number of labels, required for multilabel so the per-label state has a fixed size.
        n_bins: the reliability histogram's bins, or None when the metric keeps none.
        validate_args: check every batch.
    """

    def __init__(
        self,
        task: str = "multiclass",
        input_format: str = "logits",
        class_dim: int = 1,
        ignore_index: int | None = None,
        calibration_mode: str = "top_label",
        num_labels: int | None = None,
        n_bins: int | None = None,
        validate_args: bool = True,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        check_choice("task", task, TASKS)
        check_choice("input_format", input_format, INPUT_FORMATS if task == "multiclass" else BINARY_INPUT_FORMATS)
        check_choice("calibration_mode", calibration_mode, CALIBRATION_MODES)
        check_class_dim(class_dim)
        check_ignore_index(ignore_index)
        check_flag("validate_args", validate_args)
        if n_bins is not None:
            check_n_bins(n_bins)
        if task == "multilabel" and (isinstance(num_labels, bool) or not isinstance(num_labels, int) or num_labels < 1):
            raise ValueError(f"`num_labels` must be a positive int for task='multilabel', got {num_labels!r}.")
        if num_labels is not None:
            check_int("num_labels", num_labels, minimum=1)
        self.task = task
        self.input_format = input_format
        self.class_dim = class_dim
        self.ignore_index = ignore_index
        self.calibration_mode = calibration_mode
        self.num_labels = num_labels
        self.n_bins = n_bins
        self.validate_args = validate_args

    @property
    def bins_shape(self) -> tuple[int, ...]:
        if self.task == "multilabel":
            return (3, self.num_labels, self.n_bins)
        return (3, self.n_bins)

    def batch_stats(self, preds: Tensor, target: Tensor) -> SufficientStats | BinaryStats:
        if self.validate_args and self.task == "multilabel" and preds.shape[-1] != self.num_labels:
            raise ValueError(
                f"`preds` of shape {tuple(preds.shape)} has {preds.shape[-1]} labels, expected num_labels="
                f"{self.num_labels}."
            )
        return task_stats(
            preds,
            target,
            task=self.task,
            input_format=self.input_format,
            class_dim=self.class_dim,
            ignore_index=self.ignore_index,
            n_bins=self.n_bins,
            calibration_mode=self.calibration_mode,
            validate_args=self.validate_args,
        )
