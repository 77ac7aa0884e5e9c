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
    DeferredChecks,
    check_choice,
    check_class_dim,
    check_floating,
    check_tensor,
    defer_class_indices,
    defer_probabilities,
    defer_score_rows,
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
    """Yield validated :class:`ScoreChunk` s of ``preds`` and ``target`` (arguments as in ``sufficient_stats``).

    The checks on the data are read back once, after the last chunk
    (:class:`~xent_plugin.functional._validation.DeferredChecks`): a caller keeps nothing it computed from the
    chunks until the generator is exhausted.
    """
    check_tensor("preds", preds)
    check_tensor("target", target)
    if validate_args:
        check_choice("input_format", input_format, INPUT_FORMATS)
        check_floating("preds", preds)
        check_class_dim(class_dim)
    class_dim = normalize_class_dim(preds, class_dim)
    soft = is_soft_target(preds, target, class_dim)
    checks = DeferredChecks() if validate_args else None
    if checks is not None and not soft:
        target = defer_class_indices(checks, target, preds.shape[class_dim], ignore_index)
    dtype = compute_dtype(preds, target if soft else None)
    for chunk, (target_rows,) in row_chunks(preds, [target], class_dim):
        scores = to_scores(chunk, input_format, dtype)
        counted = None
        if soft:
            target_rows = to_probabilities(target_rows, "probs", dtype)
            if checks is not None:
                defer_probabilities(checks, "target", target_rows, target.dtype)
        elif ignore_index is not None:
            counted = target_rows != ignore_index
            target_rows = target_rows.masked_fill(~counted, 0)
        if checks is not None:
            probs = input_format == "probs"
            defer_score_rows(
                checks,
                "preds",
                scores.amax(dim=1),
                input_format,
                counted=counted,
                row_sums=chunk.sum(dim=1, dtype=dtype) if probs else None,
                sums_dtype=preds.dtype,
                probs=chunk if probs else None,
            )
        yield ScoreChunk(scores=scores, target=target_rows, counted=counted)
    if checks is not None:
        checks.raise_if_failed()
