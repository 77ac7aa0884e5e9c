"""Shapes: find the class dimension, check that targets match, and walk the rows in cache-sized chunks.

Chunks run in parallel one per worker thread (:func:`map_chunks`), each with single-threaded ATen ops, rather
than one at a time with every op spread over all threads. An op spread over threads ends in a barrier, and the
eager pass has about eight of them per chunk; on a busy machine (data-loader workers, other jobs) a thread
that is descheduled holds up the others at each one. Measured on 2 cores at load ~3: 3-9x one F.cross_entropy
with op-level threads, 0.4-0.7x with chunk-level threads, which are also faster on an idle machine (no barrier
at all, and each core keeps its own chunk in its own cache).
"""

from __future__ import annotations

import functools
import itertools
import math
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

import torch
from torch import Tensor

from xent_plugin.functional._validation import check_class_dim, check_tensor

Chunk = TypeVar("Chunk")
Result = TypeVar("Result")

# 2 MiB of fp32 per chunk. A worker holds its chunk and two chunk-sized buffers, 6 MiB, so two workers stay
# within a 32 MiB L3; chunks that would fit L2 (512 KiB a core) lose more to per-op overhead (about 30 ATen
# calls a chunk, 5-20 us each on a busy 2-core machine) than they gain. Measured on a 2-core AMD EPYC:
# 2**19 and 2**20 within noise of each other, 2**18 ~1.2x and 2**16 ~2x slower, 2**22 ~1.2x slower.
CHUNK_ELEMENTS = 1 << 19

# Batches up to this many scores run whole on one single-threaded worker (``small_batches_on_one_worker``): a
# validation batch of a classifier, say, whose ops are too small to gain from a second thread.
SMALL_BATCH_ELEMENTS = 1 << 16


def normalize_class_dim(preds: Tensor, class_dim: int) -> int:
    check_tensor("preds", preds)
    check_class_dim(class_dim)
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


def chunk_workers(preds: Tensor) -> int:
    """Worker threads for the chunks of `preds`: the caller's intra-op threads on CPU, else 1 (run inline)."""
    if preds.device.type != "cpu" or torch.compiler.is_compiling():
        return 1
    return torch.get_num_threads()


def map_chunks(function: Callable[[Chunk], Result], chunks: Iterable[Chunk], workers: int) -> Iterator[Result]:
    """``map(function, chunks)`` in order, with up to `workers` calls at once on single-threaded worker threads.

    At most ``2 * workers`` chunks are in flight, so memory stays a few chunks whatever the input. An exception
    surfaces when its chunk's turn comes, as it would in order; the chunks after it are cancelled or discarded.
    """
    chunks = iter(chunks)
    head = list(itertools.islice(chunks, 2))
    if workers <= 1 or len(head) < 2:
        yield from map(function, itertools.chain(head, chunks))
        return
    executor = _executor(workers)
    in_flight: deque[Future[Result]] = deque()
    try:
        for chunk in itertools.chain(head, chunks):
            in_flight.append(executor.submit(function, chunk))
            if len(in_flight) >= 2 * workers:
                yield in_flight.popleft().result()
        while in_flight:
            yield in_flight.popleft().result()
    finally:
        for future in in_flight:
            future.cancel()


def call_single_threaded(function: Callable[[], Result], workers: int) -> Result:
    """``function()`` on one of the single-threaded worker threads, waited for; inline when ``workers <= 1``.

    For a run of small ops (the O(rows) sums after a pass): each spread over threads ends in a barrier, and on
    a busy machine one descheduled thread holds every barrier up for a time slice (milliseconds per op).
    """
    if workers <= 1:
        return function()
    return _executor(workers).submit(function).result()


def small_batches_on_one_worker(function: Callable[..., Result]) -> Callable[..., Result]:
    """Runs ``function(preds, ...)`` whole on one single-threaded worker when ``preds`` is one small chunk.

    A small batch is a run of small ops; spread over the OpenMP threads each would end in a barrier (see
    :func:`call_single_threaded`). In the worker, ``chunk_workers`` is 1, so the call runs there inline.
    """

    @functools.wraps(function)
    def run(preds: Tensor, *args, **kwargs) -> Result:
        workers = chunk_workers(preds) if isinstance(preds, Tensor) else 1  # not a tensor: `function` says so
        if workers > 1 and preds.numel() <= SMALL_BATCH_ELEMENTS:
            return call_single_threaded(functools.partial(function, preds, *args, **kwargs), workers)
        return function(preds, *args, **kwargs)

    return run


_executor_lock = threading.Lock()
_executors: dict[int, ThreadPoolExecutor] = {}


def _executor(workers: int) -> ThreadPoolExecutor:
    with _executor_lock:
        if workers not in _executors:
            executor = ThreadPoolExecutor(workers, thread_name_prefix="xent-chunks")
            all_started = threading.Barrier(workers)  # one task per thread, so that every thread is set up
            for started in [executor.submit(_single_threaded, all_started) for _ in range(workers)]:
                started.result()
            # set_num_threads also set the count that threads started later default to, and torch's pthreadpool
            # size, both process-wide: give them back the caller's count.
            torch.set_num_threads(workers)
            _executors[workers] = executor
        return _executors[workers]


def _single_threaded(all_started: threading.Barrier) -> None:
    # The OpenMP thread count is per thread. Reading it first runs ATen's lazy per-thread initialisation, which
    # would otherwise reset it to the process-wide count on this thread's first parallel op.
    torch.get_num_threads()
    torch.set_num_threads(1)
    all_started.wait()


def _forget_executors_after_fork() -> None:
    # A forked child (a DataLoader worker, say) inherits the executors but not their threads.
    global _executor_lock
    _executor_lock = threading.Lock()
    _executors.clear()


os.register_at_fork(after_in_child=_forget_executors_after_fork)
