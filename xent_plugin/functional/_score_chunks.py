"""Validated multiclass scores, chunk by chunk, for estimators that need every class of a row.

:func:`~xent_plugin.functional.softmax_stats.row_statistics` reduces each row to a handful of numbers. The
class-wise histogram and the temperature scan need the whole row instead (every class probability, or the
scores at several temperatures), so they walk the same cache-sized chunks with the same checks.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from torch import Tensor

from xent_plugin.functional._layout import is_soft_target, normalize_class_dim, row_chunks
from xent_plugin.functional._validation import (
    INPUT_FORMATS,
    check_choice,
    check_class_dim,
    check_class_indices,
    check_floating,
    check_probabilities,
    check_score_rows,
    check_tensor,
)
from xent_plugin.functional.softmax_stats import compute_dtype, to_probabilities, to_scores


@dataclass
class ScoreChunk:
    """One chunk of rows.

    ``scores`` is (R, C) in at least float32 with the predicted distribution as its softmax (log-probabilities
    for ``input_format="probs"``); ``target`` is (R,) class indices or an (R, C) distribution; ``counted`` is
    None when every row counts, else a boolean mask (``ignore_index``). Ignored rows hold class 0 as target.
    """

    scores: Tensor
    target: Tensor
    counted: Tensor | None


def score_chunks(
    preds: Tensor,
    target: Tensor,
    *,
    input_format: str = "logits",
    class_dim: int = 1,
    ignore_index: int | None = None,
    validate_args: bool = True,
) -> Iterator[ScoreChunk]:
    """Yield validated :class:`ScoreChunk` s of ``preds`` and ``target`` (arguments as in ``sufficient_stats``)."""
    check_tensor("preds", preds)
    check_tensor("target", target)
    if validate_args:
        check_choice("input_format", input_format, INPUT_FORMATS)
        check_floating("preds", preds)
        check_class_dim(class_dim)
    class_dim = normalize_class_dim(preds, class_dim)
    soft = is_soft_target(preds, target, class_dim)
    if validate_args and not soft:
        check_class_indices(target, preds.shape[class_dim], ignore_index)
    dtype = compute_dtype(preds, target if soft else None)
    for chunk, (target_rows,) in row_chunks(preds, [target], class_dim):
        scores = to_scores(chunk, input_format, dtype)
        counted = None
        if soft:
            target_rows = to_probabilities(target_rows, "probs", dtype)
            if validate_args:
                check_probabilities("target", target_rows, target.dtype)
        elif ignore_index is not None:
            counted = target_rows != ignore_index
            target_rows = target_rows.masked_fill(~counted, 0)
        if validate_args:
            probs = input_format == "probs"
            check_score_rows(
                "preds",
                scores.amax(dim=1),
                input_format,
                counted=counted,
                row_sums=chunk.sum(dim=1, dtype=dtype) if probs else None,
                sums_dtype=preds.dtype,
                probs=chunk if probs else None,
            )
        yield ScoreChunk(scores=scores, target=target_rows, counted=counted)
