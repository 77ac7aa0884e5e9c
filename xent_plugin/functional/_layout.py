"""Shapes: find the class dimension, check that targets match, and walk the rows in cache-sized chunks."""

from __future__ import annotations

import math
from collections.abc import Iterator

from torch import Tensor

# 4 MiB of fp32 per chunk. The eager pass holds the chunk and two chunk-sized buffers, 12 MiB, which stays in a
# 32 MiB L3; smaller chunks that would fit L2 (512 KiB a core) lose more to per-op overhead (about 30 ATen calls
# a chunk, 5-20 us each on a busy 2-core machine) than they gain. Measured on 2-core AMD EPYC with 1 and 2
# threads: 2**19-2**21 within noise of each other, 2**18 ~1.2x and 2**16 ~2x slower, 2**22 ~1.2x slower.
CHUNK_ELEMENTS = 1 << 20


def normalize_class_dim(preds: Tensor, class_dim: int) -> int:
    if preds.ndim < 2:
        raise ValueError(
            f"`preds` must have a class dimension: shape (N, C), (N, C, ...) or (..., C), got {tuple(preds.shape)}."
        )
    if not -preds.ndim <= class_dim < preds.ndim:
        raise ValueError(f"`class_dim`={class_dim} is out of range for `preds` of shape {tuple(preds.shape)}.")
    return class_dim % preds.ndim


def is_soft_target(preds: Tensor, target: Tensor, class_dim: int, name: str = "target") -> bool:
    """True for a distribution shaped like `preds`, False for class indices; anything else is an error."""
    if target.shape == preds.shape and target.is_floating_point():
        return True
    index_shape = preds.shape[:class_dim] + preds.shape[class_dim + 1 :]
    if target.shape == index_shape:
        return False
    raise ValueError(
        f"`{name}` of shape {tuple(target.shape)} does not match `preds` of shape {tuple(preds.shape)} "
        f"(class_dim={class_dim}): expected class indices of shape {tuple(index_shape)} "
        f"or a distribution of shape {tuple(preds.shape)}."
    )


def row_chunks(
    preds: Tensor, others: list[Tensor | None], class_dim: int, chunk_elements: int = CHUNK_ELEMENTS
) -> Iterator[tuple[Tensor, list[Tensor | None]]]:
    """Yield `preds` as (rows, C) chunks of about `chunk_elements` scores, with each of `others` cut the same way.

    The rows are the positions of `preds` other than the class dimension, in row-major order. An entry of
    `others` is either class indices (the shape of `preds` without the class dimension), a distribution shaped
    like `preds`, or None. When the class dimension is last, chunks are views. Otherwise `preds` is seen as
    (outer, C, inner) and cut into blocks of whole `outer` slices, or of part of one when a slice alone holds more
    than a chunk; each block is copied with the class dimension moved last, so that copy stays chunk-sized.
    """
    num_classes = preds.shape[class_dim]
    rows_per_chunk = max(1, chunk_elements // max(num_classes, 1))
    if class_dim == preds.ndim - 1:
        flat = preds.reshape(-1, num_classes)
        flat_others = [_flatten(other, class_dim, num_classes) for other in others]
        for start in range(0, flat.shape[0], rows_per_chunk):
            yield flat[start : start + rows_per_chunk], [_slice(o, start, rows_per_chunk) for o in flat_others]
        return
    outer, inner = math.prod(preds.shape[:class_dim]), math.prod(preds.shape[class_dim + 1 :])
    if outer * inner == 0:
        return
    if inner <= rows_per_chunk:
        step = rows_per_chunk // inner
        blocks = ((slice(a, a + step), slice(None)) for a in range(0, outer, step))
    else:
        blocks = (
            (slice(a, a + 1), slice(b, b + rows_per_chunk))
            for a in range(outer)
            for b in range(0, inner, rows_per_chunk)
        )
    for outer_part, inner_part in blocks:
        yield (
            _block_rows(preds, outer, inner, outer_part, inner_part),
            [_block_rows(o, outer, inner, outer_part, inner_part) for o in others],
        )


def _block_rows(tensor: Tensor | None, outer: int, inner: int, outer_part: slice, inner_part: slice) -> Tensor | None:
    """One block of an (outer, C, inner) layout as (rows, C) scores, or as the rows' class indices."""
    if tensor is None:
        return None
    if tensor.is_floating_point():
        num_classes = tensor.numel() // (outer * inner)
        block = tensor.reshape(outer, num_classes, inner)[outer_part, :, inner_part]
        return block.movedim(1, -1).reshape(-1, num_classes)
    return tensor.reshape(outer, inner)[outer_part, inner_part].reshape(-1)


def _flatten(tensor: Tensor | None, class_dim: int, num_classes: int) -> Tensor | None:
    if tensor is None:
        return None
    if tensor.is_floating_point():
        return tensor.movedim(class_dim, -1).reshape(-1, num_classes)
    return tensor.reshape(-1)


def _slice(tensor: Tensor | None, start: int, step: int) -> Tensor | None:
    return None if tensor is None else tensor[start : start + step]
