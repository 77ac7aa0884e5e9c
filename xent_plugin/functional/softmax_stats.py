r"""The one pass over the logits that every multiclass metric reduces from.

For a row of scores :math:`z` (logits, log-probabilities, or the log of probabilities) the pass computes,
with :math:`m = \max_c z_c`, :math:`s = z - m`, :math:`S = \sum_c e^{s_c}` and :math:`q = e^{s}/S`:

- cross-entropy against the target, :math:`-\sum_c p_c \log q_c = \log S - \sum_c p_c s_c`;
- predictive entropy :math:`H(q) = \log S - \sum_c e^{s_c} s_c / S`;
- Brier score :math:`\sum_c (q_c - p_c)^2 = \sum_c e^{2 s_c}/S^2 - 2 \sum_c p_c q_c + \sum_c p_c^2`;
- confidence :math:`\max_c q_c = 1/S` and the top-label prediction :math:`\arg\max_c z_c`;
- against a reference distribution :math:`r`: :math:`H(r, q)`, :math:`H(r)` and :math:`\mathrm{KL}(r \| q)`.

Everything is in log space; no softmax is ever logged. A -inf score is a masked class: it gets probability 0
and contributes 0 to every sum (0 log 0 = 0). Rows are reduced to float64 sums chunk by chunk, so the working
set stays in cache and the result has a fixed size whatever the number of rows.

Two implementations compute the per-row terms, and the tests hold them to each other:

- the eager pass (:func:`_row_statistics`) handles every input. It cuts the rows into chunks of about
  ``CHUNK_ELEMENTS`` scores, runs one chunk per worker thread (see :mod:`~xent_plugin.functional._layout`), and
  makes about eight sweeps over a chunk (max with its index, shift, exp, sum, a clamp, an in-place product and
  two reductions) in two chunk-sized buffers that the thread reuses;
- the fused pass (:mod:`xent_plugin.functional.fused`) compiles the hard-target case with ``torch.compile``
  into two sweeps per row and no chunk-sized temporary; ``fused=None`` chooses it for large batches.

Neither reads anything back from the device: with ``validate_args=False`` an update never waits for a GPU
stream. With validation, the checks on the data are queued as device-side verdicts
(:class:`~xent_plugin.functional._validation.DeferredChecks`) and read back once, after the last chunk.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, fields

import torch
from torch import Tensor

from xent_plugin.functional import fused as fused_pass
from xent_plugin.functional._layout import (
    CHUNK_ELEMENTS,
    call_single_threaded,
    chunk_workers,
    is_soft_target,
    map_chunks,
    normalize_class_dim,
    row_chunks,
    small_batches_on_one_worker,
)
from xent_plugin.functional._validation import (
    INPUT_FORMATS,
    DeferredChecks,
    check_choice,
    check_class_dim,
    check_flag,
    check_floating,
    check_label_smoothing,
    check_n_bins,
    check_tensor,
    defer_class_indices,
    defer_probabilities,
    defer_score_rows,
)

ACCUMULATE_DTYPE = torch.float64

# Per-row terms are summed in batches of at least this many rows rather than chunk by chunk: the sums, the
# histogram and their bookkeeping are some 30 small ops, which cost as much as a sweep when run per chunk.
ROWS_PER_SUM = 1 << 16

MIN_CHUNK_ELEMENTS = 1 << 16

# On a GPU each chunk launches every one of the pass's ~30 kernels: chunks of up to 128 MiB of fp32, where the
# CPU's cache-sized ones would make thousands of launches per batch (measured 60-450x the one-pass floor on an
# H200 with them).
DEVICE_CHUNK_ELEMENTS = 1 << 25

ChunkReducer = Callable[[Tensor, Tensor, "Tensor | None"], Tensor]
"""``reducer(shifted, target_score, counted)``: a float64 sum over one chunk's rows that needs their every class.

``shifted`` is the chunk's scores minus each row's maximum, (R, C) in the compute dtype, with -inf for masked
classes; ``target_score`` the target's entry of it (:math:`\\sum_c p_c s_c` for a distribution); ``counted`` None
or the mask of rows that count. A reducer must not write to ``shifted``. The temperature scan is one.
"""


@dataclass
class SufficientStats:
    """Float64 sums from which every multiclass metric value follows; adding two of them merges batches.

    ``count`` rows were counted (``ignore_index`` rows are not). The ``reference_*`` sums and ``kl`` cover
    the rows that came with a reference distribution. ``bins`` is None or a (3, n_bins) tensor of per-bin
    count, summed confidence and summed correctness, the top-label reliability histogram.
    """

    count: Tensor
    cross_entropy: Tensor
    entropy: Tensor
    brier: Tensor
    correct: Tensor
    reference_count: Tensor
    reference_cross_entropy: Tensor
    reference_entropy: Tensor
    kl: Tensor
    bins: Tensor | None = None

    @classmethod
    def zeros(cls, n_bins: int | None = None, device: torch.device | str | None = None) -> SufficientStats:
        scalars = {f.name: torch.zeros((), dtype=ACCUMULATE_DTYPE, device=device) for f in fields(cls)[:-1]}
        bins = None if n_bins is None else torch.zeros(3, n_bins, dtype=ACCUMULATE_DTYPE, device=device)
        return cls(**scalars, bins=bins)

    def add_(self, other: SufficientStats) -> SufficientStats:
        for f in fields(self):
            mine, theirs = getattr(self, f.name), getattr(other, f.name)
            if mine is not None and theirs is not None:
                mine.add_(theirs)
        return self


def compute_dtype(*tensors: Tensor | None) -> torch.dtype:
    """The dtype the pass computes in: the widest floating dtype among ``tensors``, and at least float32.

    Logits in float32 beside a float64 reference distribution compute in float64; bfloat16 beside float16,
    neither of which holds the other, in float32. Class indices and None do not count.
    """
    dtype = torch.float32
    for tensor in tensors:
        if tensor is not None and tensor.is_floating_point():
            dtype = torch.promote_types(dtype, tensor.dtype)
    return dtype


def to_scores(preds: Tensor, input_format: str, dtype: torch.dtype | None = None) -> Tensor:
    """Scores whose softmax is the predicted distribution, in ``dtype`` (default: :func:`compute_dtype`)."""
    scores = preds.to(compute_dtype(preds) if dtype is None else dtype)
    return scores.log() if input_format == "probs" else scores


def to_probabilities(distribution: Tensor, input_format: str, dtype: torch.dtype | None = None) -> Tensor:
    """The distribution as probabilities, in ``dtype`` (default: :func:`compute_dtype`)."""
    values = distribution.to(compute_dtype(distribution) if dtype is None else dtype)
    if input_format == "logits":
        return values.softmax(dim=-1)
    if input_format == "log_probs":
        return values.exp()
    return values


@small_batches_on_one_worker
def sufficient_stats(
    preds: Tensor,
    target: Tensor,
    reference: Tensor | None = None,
    *,
    input_format: str = "logits",
    class_dim: int = 1,
    ignore_index: int | None = None,
    label_smoothing: float = 0.0,
    n_bins: int | None = None,
    validate_args: bool = True,
    fused: bool | None = None,
    chunk_reducers: Sequence[ChunkReducer] = (),
    on_rows: Callable[[RowStatistics], None] | None = None,
) -> SufficientStats:
    """Reduce one batch to float64 sums in one pass over ``preds``; the sums carry no gradient.

    Args:
        preds: scores of shape (N, C), (N, C, ...) or (..., C), as logits, probabilities or log-probabilities.
        target: class indices (``preds``' shape without the class dimension) or a distribution shaped like
            ``preds``. It defines cross-entropy, Brier score and correctness.
        reference: an optional distribution shaped like ``preds`` (the true p(y|x)) for H(r, q), H(r) and
            KL(r || q). A soft ``target`` is its own reference when this is None.
        input_format: ``"logits"``, ``"probs"`` or ``"log_probs"``.
        class_dim: the class dimension of ``preds``: 1 as in ``F.cross_entropy``, or -1 for (B, T, V) tokens.
        ignore_index: a target value that marks rows not to count.
        label_smoothing: as in ``F.cross_entropy``; affects the cross-entropy only.
        n_bins: when given, also the top-label reliability histogram with this many equal-width bins.
        validate_args: check shapes, dtypes and values (cost O(rows), not O(rows x classes)).
        fused: use the compiled pass of :mod:`~xent_plugin.functional.fused` for hard targets without a
            reference: True always, False never, None (default) for batches of at least
            ``fused.AUTO_MIN_ELEMENTS`` scores. It falls back to the eager pass by itself.
        chunk_reducers: functions of a chunk's whole rows, run while the chunk is in cache (see
            :data:`ChunkReducer`); their sums arrive in ``RowStatistics.chunk_sums``, in this order. They run on
            the eager pass's chunks, so a batch with reducers never takes the fused pass.
        on_rows: called with the per-row statistics, a batch of rows at a time and in row order, so that
            estimators that weight or histogram rows (a bootstrap, a calibration test) share this pass. The
            batch's checks run after the last chunk: a caller keeps nothing from ``on_rows`` until this returns.

    Example:
        >>> logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 0.0, float("-inf")]])
        >>> stats = sufficient_stats(logits, torch.tensor([0, 1]))
        >>> round((stats.cross_entropy / stats.count).item(), 4)
        0.4315
    """
    check_tensor("preds", preds)
    if validate_args and n_bins is not None:
        check_n_bins(n_bins)
    totals = SufficientStats.zeros(n_bins, device=preds.device)
    pending: list[RowStatistics] = []
    pending_rows = 0
    workers: int | None = None

    def add_pending() -> None:
        rows = _concatenate_rows(pending)
        totals.add_(_sum_rows(rows, n_bins))
        if on_rows is not None:
            on_rows(rows)

    for rows in row_statistics(
        preds,
        target,
        reference,
        input_format=input_format,
        class_dim=class_dim,
        ignore_index=ignore_index,
        label_smoothing=label_smoothing,
        validate_args=validate_args,
        fused=fused,
        chunk_reducers=chunk_reducers,
    ):
        if workers is None:  # known once row_statistics has checked the arguments
            # The compiled kernel's own threads have just run: its sums run inline rather than wait for a worker.
            fused_rows = _takes_fused_pass(preds, target, reference, class_dim, fused, chunk_reducers)
            workers = 1 if fused_rows else chunk_workers(preds)
        pending.append(rows)
        pending_rows += rows.cross_entropy.numel()
        if pending_rows >= ROWS_PER_SUM:
            call_single_threaded(add_pending, workers)
            pending, pending_rows = [], 0
    if pending:
        call_single_threaded(add_pending, workers)
    return totals


def row_statistics(
    preds: Tensor,
    target: Tensor,
    reference: Tensor | None = None,
    *,
    input_format: str = "logits",
    class_dim: int = 1,
    ignore_index: int | None = None,
    label_smoothing: float = 0.0,
    validate_args: bool = True,
    fused: bool | None = None,
    chunk_reducers: Sequence[ChunkReducer] = (),
) -> Iterator[RowStatistics]:
    """The per-row statistics of :func:`sufficient_stats`, one cache-sized chunk of rows at a time.

    For estimators that weight rows before summing them (a bootstrap, say); arguments as in
    :func:`sufficient_stats`.
    """
    check_tensor("preds", preds)
    check_tensor("target", target)
    if reference is not None:
        check_tensor("reference", reference)
    if validate_args:
        check_choice("input_format", input_format, INPUT_FORMATS)
        check_floating("preds", preds)
        check_class_dim(class_dim)
        check_label_smoothing(label_smoothing)
        check_flag("validate_args", validate_args)
    class_dim = normalize_class_dim(preds, class_dim)
    num_classes = preds.shape[class_dim]
    soft = is_soft_target(preds, target, class_dim)
    checks = DeferredChecks() if validate_args else None
    if checks is not None and not soft:
        target = defer_class_indices(checks, target, num_classes, ignore_index)
    dtype = compute_dtype(preds, target if soft else None, reference)
    if not soft and target.dtype != torch.long:
        target = target.long()  # gather takes int64 indices only; uint8/int16 labels are legal
    reference_is_target = reference is None and soft
    if reference is not None and validate_args:
        check_floating("reference", reference)
        if not is_soft_target(preds, reference, class_dim, name="reference"):
            raise ValueError(f"`reference` must be a distribution shaped like `preds` {tuple(preds.shape)}.")
    use_fused = _takes_fused_pass(preds, target, reference, class_dim, fused, chunk_reducers)
    workers = 1 if use_fused else chunk_workers(preds)  # the compiled kernel threads itself and holds the GIL
    eager_elements = _eager_chunk_elements(preds, class_dim, input_format, chunk_workers(preds))
    chunk_elements = (
        fused_pass.chunk_elements(num_classes, class_dim == preds.ndim - 1) if use_fused else eager_elements
    )
    workspaces: dict[int, _Workspace] = {}  # one per thread that runs chunks, for this call only

    @torch.no_grad()
    def rows_of(chunk: tuple[Tensor, list[Tensor | None]]) -> RowStatistics:
        scores, (target_rows, reference_rows) = chunk
        if not use_fused:
            return eager_rows_of(chunk)
        rows = _fused_row_statistics(
            scores,
            target_rows,
            input_format=input_format,
            ignore_index=ignore_index,
            label_smoothing=label_smoothing,
            checks=checks,
        )
        if rows is not None:
            return rows
        # The compiled pass failed and has warned: this chunk and the rest run eagerly, in eager-sized pieces.
        pieces = row_chunks(scores, [target_rows, reference_rows], 1, eager_elements)
        return _concatenate_rows([eager_rows_of(piece) for piece in pieces])

    def eager_rows_of(chunk: tuple[Tensor, list[Tensor | None]]) -> RowStatistics:
        scores, (target_rows, reference_rows) = chunk
        return _row_statistics(
            to_scores(scores, input_format, dtype),
            target_rows,
            target_rows if reference_is_target else reference_rows,
            input_format=input_format,
            ignore_index=None if soft else ignore_index,
            label_smoothing=label_smoothing,
            checks=checks,
            input_dtype=preds.dtype,
            raw_probs=scores if checks is not None and input_format == "probs" else None,
            workspace=workspaces.setdefault(threading.get_ident(), _Workspace()),
            chunk_reducers=chunk_reducers,
        )

    chunks = row_chunks(preds, [target, reference], class_dim, chunk_elements)
    yield from map_chunks(rows_of, chunks, workers)
    if checks is not None:
        checks.raise_if_failed()


def _takes_fused_pass(
    preds: Tensor,
    target: Tensor,
    reference: Tensor | None,
    class_dim: int,
    fused: bool | None,
    chunk_reducers: Sequence[ChunkReducer],
) -> bool:
    """Whether :func:`row_statistics` computes these checked arguments' rows with the compiled pass."""
    # Chunk reducers run on the eager pass's cache-sized chunks: the compiled pass streams chunks far larger than a
    # cache, and the reducers would read them from memory a second time.
    soft = is_soft_target(preds, target, normalize_class_dim(preds, class_dim))
    return not chunk_reducers and fused_pass.applies(fused, preds, soft=soft, has_reference=reference is not None)


def _eager_chunk_elements(preds: Tensor, class_dim: int, input_format: str, workers: int) -> int:
    """Scores per eager chunk: ``CHUNK_ELEMENTS`` (``DEVICE_CHUNK_ELEMENTS`` on a GPU), or less so that the pass
    adds at most one logits tensor.

    Each worker's chunk needs two float32 (float64 for float64 input) buffers; when the input is not already rows
    of float32/64 scores, each of the up to ``2 * workers`` chunks in flight is also a converted copy, and a
    running one a second. A small input is cut into smaller chunks so that all this stays within its own size,
    down to ``MIN_CHUNK_ELEMENTS``.
    """
    work_bytes = 8 if preds.dtype == ACCUMULATE_DTYPE else 4
    converted = (
        preds.dtype not in (torch.float32, ACCUMULATE_DTYPE)
        or input_format == "probs"
        or class_dim != preds.ndim - 1
        or not preds.is_contiguous()
    )
    fitting = preds.numel() * preds.element_size() // (work_bytes * workers * (2 + 3 * converted))
    largest = CHUNK_ELEMENTS if preds.device.type == "cpu" else DEVICE_CHUNK_ELEMENTS
    return max(MIN_CHUNK_ELEMENTS, min(largest, fitting))


@dataclass
class RowStatistics:
    """Per-row statistics of one chunk; ``counted`` is None when every row counts, else a boolean mask."""

    counted: Tensor | None
    cross_entropy: Tensor
    entropy: Tensor
    brier: Tensor
    confidence: Tensor
    correct: Tensor
    reference_cross_entropy: Tensor | None
    reference_entropy: Tensor | None
    kl: Tensor | None
    chunk_sums: tuple[Tensor, ...] = ()


def _fused_row_statistics(
    scores: Tensor,
    target: Tensor,
    *,
    input_format: str,
    ignore_index: int | None,
    label_smoothing: float,
    checks: DeferredChecks | None,
) -> RowStatistics | None:
    """The hard-target rows of one chunk from the compiled pass, validated as the eager pass validates them."""
    rows = fused_pass.hard_target_rows(
        scores, target, input_format=input_format, ignore_index=ignore_index, label_smoothing=label_smoothing
    )
    if rows is None:
        return None
    if checks is not None:
        probs = input_format == "probs"
        defer_score_rows(
            checks,
            "preds",
            rows.row_max,
            input_format,
            counted=rows.counted,
            row_sums=rows.partition * rows.row_max.exp() if probs else None,
            sums_dtype=scores.dtype,
            probs=scores if probs else None,
        )
    return RowStatistics(
        counted=rows.counted,
        cross_entropy=rows.cross_entropy,
        entropy=rows.entropy,
        brier=rows.brier,
        confidence=rows.confidence,
        correct=rows.correct,
        reference_cross_entropy=None,
        reference_entropy=None,
        kl=None,
    )


def _row_statistics(
    scores: Tensor,
    target: Tensor,
    reference: Tensor | None,
    *,
    input_format: str,
    ignore_index: int | None,
    label_smoothing: float,
    checks: DeferredChecks | None,
    input_dtype: torch.dtype,
    raw_probs: Tensor | None = None,
    workspace: _Workspace | None = None,
    chunk_reducers: Sequence[ChunkReducer] = (),
) -> RowStatistics:
    """The per-row terms of one (rows, C) chunk; ``raw_probs`` is the chunk as given, to validate "probs" input."""
    workspace = _Workspace() if workspace is None else workspace
    counted = None if target.ndim != 1 or ignore_index is None else target != ignore_index
    # max(dim) breaks ties to the first index, which is the top-label prediction; its index costs less than the
    # separate sweep an argmax would be.
    row_max, prediction = scores.max(dim=1)
    shifted = torch.sub(scores, row_max[:, None], out=workspace.buffer(0, scores))
    exp_shifted = torch.exp(shifted, out=workspace.buffer(1, scores))
    partition = exp_shifted.sum(dim=1)
    log_partition = partition.log()
    if checks is not None:
        defer_score_rows(
            checks,
            "preds",
            row_max,
            input_format,
            counted=counted,
            row_sums=partition * row_max.exp() if raw_probs is not None else None,
            sums_dtype=input_dtype,
            probs=raw_probs,
        )

    if target.ndim == 1:
        safe_target = target if counted is None else target.masked_fill(~counted, 0)
        target_shifted = shifted.gather(1, safe_target[:, None]).squeeze(1)
        cross_entropy = log_partition - target_shifted
        target_prob_dot = target_shifted.exp() / partition
        target_square = 1
        correct = (prediction == safe_target).to(scores.dtype)
    else:
        target_probs = _checked_probabilities(target, "target", checks, scores.dtype)
        target_shifted = _masked_dot(target_probs, shifted)
        # log S times the row's mass, not log S alone: accepted rows may sum to 1 only within rounding.
        cross_entropy = log_partition * target_probs.sum(dim=1) - target_shifted
        target_prob_dot = _row_dot(target_probs, exp_shifted) / partition
        target_square = _row_dot(target_probs, target_probs)
        correct = target_probs.gather(1, prediction[:, None]).squeeze(1)
    if label_smoothing > 0:
        uniform_cross_entropy = log_partition - shifted.mean(dim=1)
        cross_entropy = (1 - label_smoothing) * cross_entropy + label_smoothing * uniform_cross_entropy

    reference_cross_entropy = reference_entropy = kl = None
    if reference is not None:
        reference_probs = (
            target_probs
            if reference is target
            else _checked_probabilities(reference, "reference", checks, scores.dtype)
        )  # a soft target that is its own reference is checked once
        log_q = shifted - log_partition[:, None]
        positive = reference_probs > 0
        log_reference = torch.where(positive, reference_probs.log(), 0.0)
        reference_cross_entropy = -torch.where(positive, reference_probs * log_q, 0.0).sum(dim=1)
        reference_entropy = -(reference_probs * log_reference).sum(dim=1)
        # Summing p (log p - log q) term by term, not subtracting H(p) from H(p, q), keeps KL(p || p) exactly 0;
        # the clamp only removes rounding below the bound KL >= 0.
        kl = torch.where(positive, reference_probs * (log_reference - log_q), 0.0).sum(dim=1).clamp_min(0)

    chunk_sums = tuple(reducer(shifted, target_shifted, counted) for reducer in chunk_reducers)

    # Last: this overwrites `shifted`.
    # A masked class has s = -inf and e^s = 0, and 0 * -inf is NaN; clamped to the most negative finite value it
    # adds 0 (one more in-place sweep, where finding the NaN rows to redo them would read a verdict back).
    weighted = shifted.clamp_min_(torch.finfo(shifted.dtype).min).mul_(exp_shifted).sum(dim=1)
    entropy = log_partition - weighted / partition
    sum_sq_prob = torch.linalg.vector_norm(exp_shifted, dim=1).square() / partition.square()
    brier = sum_sq_prob - 2 * target_prob_dot + target_square

    return RowStatistics(
        counted=counted,
        cross_entropy=cross_entropy,
        entropy=entropy,
        brier=brier,
        confidence=partition.reciprocal(),
        correct=correct,
        reference_cross_entropy=reference_cross_entropy,
        reference_entropy=reference_entropy,
        kl=kl,
        chunk_sums=chunk_sums,
    )


class _Workspace:
    """Chunk-sized buffers that the eager pass reuses from chunk to chunk instead of allocating per chunk."""

    def __init__(self) -> None:
        self._buffers: dict[int, Tensor] = {}

    def buffer(self, slot: int, like: Tensor) -> Tensor:
        flat = self._buffers.get(slot)
        if flat is None or flat.numel() < like.numel() or flat.dtype != like.dtype or flat.device != like.device:
            flat = self._buffers[slot] = torch.empty(like.numel(), dtype=like.dtype, device=like.device)
        return flat[: like.numel()].view(like.shape)


def _checked_probabilities(
    distribution: Tensor, name: str, checks: DeferredChecks | None, dtype: torch.dtype
) -> Tensor:
    probs = to_probabilities(distribution, "probs", dtype)
    if checks is not None:
        defer_probabilities(checks, name, probs, distribution.dtype)
    return probs


def _row_dot(a: Tensor, b: Tensor) -> Tensor:
    """Row-wise dot product (a batched ``bmm`` of 1 x C by C x 1 is several times slower on CPU)."""
    return torch.linalg.vecdot(a, b, dim=1)


def _masked_dot(probs: Tensor, shifted: Tensor) -> Tensor:
    """sum_c p_c s_c with 0 * -inf = 0, and +inf where p_c > 0 meets a masked class."""
    return torch.where(probs > 0, probs * shifted, 0.0).sum(dim=1)


def _concatenate_rows(chunks: list[RowStatistics]) -> RowStatistics:
    if len(chunks) == 1:
        return chunks[0]
    columns = {}
    for f in fields(RowStatistics):
        values = [getattr(chunk, f.name) for chunk in chunks]
        if f.name == "chunk_sums":
            columns[f.name] = tuple(sum(sums[1:], sums[0]) for sums in zip(*values, strict=True))
        else:
            columns[f.name] = None if values[0] is None else torch.cat(values)
    return RowStatistics(**columns)


def _sum_rows(rows: RowStatistics, n_bins: int | None) -> SufficientStats:
    device = rows.cross_entropy.device

    def totals(values: list[Tensor]) -> list[Tensor]:
        stacked = torch.stack(values)
        if rows.counted is not None:
            # where(), not multiplication: an ignored row may hold inf, and inf * 0 is NaN.
            stacked = torch.where(rows.counted, stacked, 0.0)
        return list(stacked.sum(dim=1, dtype=ACCUMULATE_DTYPE).unbind())

    weight = None if rows.counted is None else rows.counted.to(rows.cross_entropy.dtype)
    count = (
        torch.full((), rows.cross_entropy.numel(), dtype=ACCUMULATE_DTYPE, device=device)
        if weight is None
        else weight.sum(dtype=ACCUMULATE_DTYPE)
    )
    cross_entropy, entropy, brier, correct = totals([rows.cross_entropy, rows.entropy, rows.brier, rows.correct])
    has_reference = rows.kl is not None
    if has_reference:
        reference_cross_entropy, reference_entropy, kl = totals(
            [rows.reference_cross_entropy, rows.reference_entropy, rows.kl]
        )
    else:
        reference_cross_entropy = reference_entropy = kl = torch.zeros((), dtype=ACCUMULATE_DTYPE, device=device)
    return SufficientStats(
        count=count,
        cross_entropy=cross_entropy,
        entropy=entropy,
        brier=brier,
        correct=correct,
        reference_count=count if has_reference else torch.zeros_like(count),
        reference_cross_entropy=reference_cross_entropy,
        reference_entropy=reference_entropy,
        kl=kl,
        bins=None if n_bins is None else rows_reliability_bins(rows, n_bins),
    )


def rows_reliability_bins(rows: RowStatistics, n_bins: int) -> Tensor:
    """:func:`reliability_bins` of the rows that count."""
    if rows.counted is None:
        return reliability_bins(rows.confidence, rows.correct, n_bins)
    # An ignored row may be NaN or all -inf (as F.cross_entropy allows): NaN * 0 would reach the histogram.
    confidence = torch.where(rows.counted, rows.confidence, 0.0)
    return reliability_bins(confidence, rows.correct, n_bins, rows.counted.to(rows.confidence.dtype))


def bin_index(confidence: Tensor, n_bins: int) -> Tensor:
    """Equal-width bin of each confidence in [0, 1]; bin k is [k/n, (k+1)/n) and the last one includes 1.0."""
    return (confidence * n_bins).long().clamp_(0, n_bins - 1)


def reliability_bins(confidence: Tensor, correct: Tensor, n_bins: int, weight: Tensor | None = None) -> Tensor:
    """(3, n_bins) float64 sums of count, confidence and correctness per equal-width confidence bin.

    Example:
        >>> reliability_bins(torch.tensor([0.1, 0.9, 1.0]), torch.tensor([0.0, 1.0, 1.0]), n_bins=2)
        tensor([[1.0000, 2.0000],
                [0.1000, 1.9000],
                [0.0000, 2.0000]], dtype=torch.float64)
    """
    weight = torch.ones_like(confidence) if weight is None else weight
    values = torch.stack([weight, confidence * weight, correct * weight]).to(ACCUMULATE_DTYPE)
    bins = torch.zeros(3, n_bins, dtype=ACCUMULATE_DTYPE, device=confidence.device)
    return bins.index_add_(1, bin_index(confidence, n_bins), values)
