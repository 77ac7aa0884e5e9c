"""The tasks a bundled model trains: one logit per class, or one logit for the positive class."""

from __future__ import annotations

from xent_plugin.functional._validation import check_choice, check_int
from xent_plugin.functional.task_stats import TASKS as METRIC_TASKS

# The metrics also take "multilabel"; no bundled model or dataset has several labels per row.
TASKS = tuple(task for task in METRIC_TASKS if task != "multilabel")


def check_task(task: object) -> None:
    check_choice("task", task, TASKS)


def check_num_classes(num_classes: object, task: str) -> None:
    if task == "binary" and num_classes not in (1, 2):
        raise ValueError(f"`num_classes` must be 1 or 2 for task='binary', got {num_classes!r}.")
    if task == "multiclass":
        check_int("num_classes", num_classes, minimum=2)
