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
    check_class_indices,
    check_floating,
    check_probability_rows,
    check_probability_values,
    check_row_maxima,
)
from xent_plugin.functional.softmax_stats import to_probabilities, to_scores


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
    if validate_args:
        check_choice("input_format", input_format, INPUT_FORMATS)
        check_floating("preds", preds)
    class_dim = normalize_class_dim(preds, class_dim)
    soft = is_soft_target(preds, target, class_dim)
    if validate_args and not soft:
        check_class_indices(target, preds.shape[class_dim], ignore_index)
    for chunk, (target_rows,) in row_chunks(preds, [target], class_dim):
        scores = to_scores(chunk, input_format)
        if validate_args:
            check_row_maxima("preds", scores.amax(dim=1), input_format)
            if input_format == "probs":
                check_probability_rows("preds", chunk.to(scores.dtype).sum(dim=1), preds.dtype)
        counted = None
        if soft:
            target_rows = to_probabilities(target_rows, "probs")
            if validate_args:
                check_probability_values("target", target_rows)
                check_probability_rows("target", target_rows.sum(dim=1), target.dtype)
        elif ignore_index is not None:
            counted = target_rows != ignore_index
            target_rows = target_rows.masked_fill(~counted, 0)
        yield ScoreChunk(scores=scores, target=target_rows, counted=counted)
