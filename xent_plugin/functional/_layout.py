"""Shapes: find the class dimension, check that targets match, and walk the rows in cache-sized chunks."""

from __future__ import annotations

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
    """Yield `preds` as (rows, C) chunks, with each of `others` cut the same way.

    An entry of `others` is either class indices (the shape of `preds` without the class dimension), a
    distribution shaped like `preds`, or None. When the class dimension is not last, the chunks are cut
    along dimension 0 before the class dimension is moved, so the copy that needs stays chunk-sized.
    """
    if class_dim == 0:
        # Chunks are cut along dimension 0, so a leading class dimension moves last first (one copy).
        preds = preds.movedim(0, -1)
        others = [o.movedim(0, -1) if o is not None and o.is_floating_point() else o for o in others]
        class_dim = preds.ndim - 1
    num_classes = preds.shape[class_dim]
    if class_dim == preds.ndim - 1:
        flat = preds.reshape(-1, num_classes)
        flat_others = [_flatten(other, class_dim, num_classes) for other in others]
        step = max(1, chunk_elements // max(num_classes, 1))
        for start in range(0, flat.shape[0], step):
            yield flat[start : start + step], [_slice(o, start, step) for o in flat_others]
        return
    per_sample = max(1, preds[0].numel()) if preds.shape[0] else 1
    step = max(1, chunk_elements // per_sample)
    for start in range(0, preds.shape[0], step):
        chunk = preds[start : start + step]
        yield (
            _flatten(chunk, class_dim, num_classes),
            [_flatten(_slice(o, start, step), class_dim, num_classes) for o in others],
        )


def _flatten(tensor: Tensor | None, class_dim: int, num_classes: int) -> Tensor | None:
    if tensor is None:
        return None
    if tensor.is_floating_point():
        return tensor.movedim(class_dim, -1).reshape(-1, num_classes)
    return tensor.reshape(-1)


def _slice(tensor: Tensor | None, start: int, step: int) -> Tensor | None:
    return None if tensor is None else tensor[start : start + step]
