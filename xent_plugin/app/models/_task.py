"""The two output layouts a classifier can have: one logit per class, or one logit for the positive class."""

from __future__ import annotations

TASKS = ("multiclass", "binary")


def check_task(task: object) -> None:
    if task not in TASKS:
        raise ValueError(f"`task` must be one of {TASKS}, got {task!r}.")


def check_num_classes(num_classes: object, task: str) -> None:
    if task == "binary" and num_classes not in (1, 2):
        raise ValueError(f"`num_classes` must be 1 or 2 for task='binary', got {num_classes!r}.")
    if task == "multiclass" and (isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2):
        raise ValueError(f"`num_classes` must be an integer >= 2 for task='multiclass', got {num_classes!r}.")
