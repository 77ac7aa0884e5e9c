r"""The fused pass: the per-row softmax statistics of hard-target batches as two ``torch.compile`` graphs.

The eager pass in :mod:`~xent_plugin.functional.softmax_stats` runs about eight ATen sweeps over each chunk of
logits. Compiled by inductor, :func:`_row_sums` becomes one loop over rows that sweeps each row twice (max,
then exp with every sum at once), the second sweep reading the row from L1/L2, and writes only O(rows)
outputs: no (rows, C) temporary, a row-sized buffer per thread at most. The O(rows) rest (logs, the target's
score, cross-entropy, Brier, correctness) is a second graph, :func:`_row_terms`, one loop over rows: in the
same graph it would join the sweeps' loop with a loop vectorised over rows, and inductor would then split max
and exp into two sweeps over all rows, each reading the logits from memory (bf16 4096 x 32000: 1.62x against
1.46x the floor). The exponential is computed as a power of two (see :func:`_row_sums`). On a 2-core CPU with
2 threads a whole update costs 1.1-1.35x a compiled one-pass logsumexp, and the eager pass 3.6-4.3x
(``scripts/bench.py`` measures both). Inductor has no online softmax for CPU, and cutting rows into vocabulary
blocks that stay in L1 (an online maximum across blocks) measured no faster there.

When it runs. ``fused=True`` asks for it, ``fused=False`` forbids it, and ``fused=None`` (the default everywhere)
takes it when all of these hold:

- the targets are class indices and there is no reference distribution: the hot path of classifiers and
  language models. Soft targets and references always take the eager pass;
- the batch holds at least :data:`AUTO_MIN_ELEMENTS` scores (2**23, 32 MiB of fp32). On a 2-core CPU the first
  compile in a process takes 7-15 s with an empty inductor cache (up to ~35 s on a busy machine) and ~2.5 s with
  a warm one, and each further kind of input ~2 s (0.2 s warm). A run that streams batches this large earns that
  back within some hundred of them, while unit tests and small validation batches never trigger a compile.
  A test that wants the fused pass says ``fused=True``;
- :data:`MODE` is ``"auto"`` (the environment variable ``XENT_PLUGIN_FUSED=auto|on|off`` sets it at import);
  ``"on"`` treats ``None`` as True and ``"off"`` as False, which also overrides ``fused=True``;
- ``torch.compile`` is not already tracing the caller (then the eager code is traced into the caller's graph),
  and compiling has not failed before in this process.

Recompiles. The number of rows is marked dynamic (``maybe_mark_dynamic``), so a new batch size or a short last
chunk reuses the kernel. The class count is static, as it is fixed for a model, so inductor can plan its loops
(cascade summation above 4096 classes); each new class count compiles once, as does a new input dtype,
``input_format == "probs"`` and label smoothing on or off, and for :func:`_row_terms` each ``ignore_index`` and
smoothing value, up to :data:`MAX_GRAPHS` graphs.

Falling back. Any exception from compiling or running the kernel (no C++ compiler, an unsupported backend)
disables the fused pass for the rest of the process with one ``RuntimeWarning``, and the caller redoes the
chunk eagerly, so a genuine input error still surfaces with the eager pass's message.
"""

from __future__ import annotations

import math
import os
import threading
import types
import warnings
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

MODES = ("auto", "on", "off")
MODE = os.environ.get("XENT_PLUGIN_FUSED", "auto").strip().lower()
if MODE not in MODES:
    raise ValueError(f"XENT_PLUGIN_FUSED must be one of {MODES}, got {MODE!r}.")

AUTO_MIN_ELEMENTS = 1 << 23

LOG2_E = math.log2(math.e)

# Scores per kernel call (64 MiB of fp32). The kernel keeps no chunk-sized temporary, so this bounds only the copy
# that a class dimension other than the last needs; each call costs ~0.1-0.2 ms of dynamo and wrapper overhead.
# Calls run one after another in the calling thread, each on all its OpenMP threads: inductor's CPU kernels hold
# the GIL, so the eager pass's chunk-per-thread scheme would run them one at a time.
CHUNK_ELEMENTS = 1 << 24

# Rows per kernel call when the class dimension is last and chunks are views: a call costs dynamo's guards and
# one barrier per sweep on each thread, and only its per-row outputs (a few floats a row) grow with it.
ROWS_PER_CALL = 1 << 16

# Compiled graphs per process, two per kind of input (dtypes, class count, options); later kinds run eagerly.
MAX_GRAPHS = 32

_kernels: dict[tuple, Callable] = {}
_classes: dict[tuple, Tensor] = {}
_kernels_lock = threading.Lock()
_failed = False
_warned_full = False


class HardTargetRows(NamedTuple):
    """Per-row terms of one chunk; ``counted`` is None when no ``ignore_index`` was given."""

    row_max: Tensor
    partition: Tensor
    counted: Tensor | None
    cross_entropy: Tensor
    entropy: Tensor
    brier: Tensor
    confidence: Tensor
    correct: Tensor


def applies(fused: bool | None, preds: Tensor, *, soft: bool, has_reference: bool) -> bool:
    """Whether a batch takes the fused pass (see the module docstring for the rules)."""
    if soft or has_reference or _failed or MODE == "off" or torch.compiler.is_compiling():
        return False
    if fused is None and MODE == "on":
        fused = True
    if fused is None:
        return preds.numel() >= AUTO_MIN_ELEMENTS
    return bool(fused)


def chunk_elements(num_classes: int, class_dim_is_last: bool) -> int:
    """Scores per kernel call: whole blocks of :data:`ROWS_PER_CALL` rows for views, else :data:`CHUNK_ELEMENTS`."""
    return max(CHUNK_ELEMENTS, num_classes * ROWS_PER_CALL) if class_dim_is_last else CHUNK_ELEMENTS


def hard_target_rows(
    scores: Tensor, target: Tensor, *, input_format: str, ignore_index: int | None, label_smoothing: float
) -> HardTargetRows | None:
    """The per-row terms of a (rows, C) chunk with class-index targets; None where the eager pass must run.

    That is after a failure (warned once, and for good) or for a new kind of input once :data:`MAX_GRAPHS`
    graphs exist (warned once). Two compiled graphs run one after the other: :func:`_row_sums` makes the
    (rows, C) sweeps, and :func:`_row_terms` the O(rows) rest, in one loop over rows instead of some twenty
    eager ops on a chunk that has left the cache.
    """
    smoothing = label_smoothing > 0
    probs = input_format == "probs"
    kind = (scores.dtype, scores.shape[1], probs, smoothing)
    terms_kind = (*kind, ignore_index, label_smoothing)
    if _kernel(_row_terms, terms_kind) is None:  # claimed first: no kind gets its sweeps compiled without its rest
        return None
    classes = _class_indices(scores.shape[1], scores.device)
    _rows_dynamic(scores)
    sums = _run(_row_sums, kind, scores, classes, probs, smoothing)
    if sums is None:
        return None
    _rows_dynamic(*sums, target)
    terms = _run(_row_terms, terms_kind, *sums, scores, target, probs, ignore_index, label_smoothing)
    if terms is None:
        return None
    return HardTargetRows(sums[0], sums[1], *terms)


def reset() -> None:
    """Forget the compiled kernels and any earlier failure (for tests and after changing torch settings)."""
    global _failed, _warned_full
    with _kernels_lock:
        _kernels.clear()
        _classes.clear()
    _failed = _warned_full = False


def _rows_dynamic(*tensors: Tensor | None) -> None:
    """Marks the first dimension of ``tensors``, the rows, dynamic: a new batch size reuses the compiled graphs."""
    for tensor in tensors:
        if tensor is not None:
            torch._dynamo.maybe_mark_dynamic(tensor, 0)


def _run(function: Callable, kind: tuple, *args) -> tuple | None:
    """``function(*args)`` compiled for this kind of input; None to run eagerly."""
    global _failed
    if _failed:
        return None
    try:
        kernel = _kernel(function, kind)
        if kernel is None:
            return None
        return kernel(*args)
    except Exception as error:  # noqa: BLE001 - any failure of the compiler stack means: use the eager pass
        _failed = True
        warnings.warn(
            f"xent_plugin: the compiled softmax pass failed ({type(error).__name__}: {error}); "
            "using the eager pass for the rest of this process.",
            RuntimeWarning,
            stacklevel=3,
        )
        return None


def _class_indices(num_classes: int, device: torch.device) -> Tensor:
    """0, 1, ..., C - 1 as floats on ``device``, made once per class count and device (float64 past 2**24)."""
    key = (num_classes, device)
    with _kernels_lock:
        classes = _classes.get(key)
        if classes is None:
            dtype = torch.float32 if num_classes <= 1 << 24 else torch.float64
            classes = _classes[key] = torch.arange(num_classes, dtype=dtype, device=device)
    return classes


def _kernel(function: Callable, kind: tuple) -> Callable | None:
    """The compiled ``function`` for this kind of input, made on first use; None past :data:`MAX_GRAPHS`."""
    global _warned_full
    key = (function.__name__, *kind)
    with _kernels_lock:
        kernel = _kernels.get(key)
        if kernel is None and len(_kernels) < MAX_GRAPHS:
            # A code object of its own per kind: dynamo keeps its cache and its recompile limit (8) per code object,
            # so kinds do not use up one another's budget, and no global dynamo setting has to change.
            code = function.__code__.replace(co_name=f"{function.__name__}_{len(_kernels)}")
            own = types.FunctionType(code, function.__globals__, code.co_name)
            kernel = _kernels[key] = torch.compile(own, dynamic=False, fullgraph=True)
        elif kernel is None and not _warned_full:
            _warned_full = True
            warnings.warn(
                f"xent_plugin: {MAX_GRAPHS} compiled graphs of the softmax pass already exist; new kinds of "
                "input (dtype, class count, options) use the eager pass.",
                RuntimeWarning,
                stacklevel=4,
            )
    return kernel


def _row_sums(
    scores: Tensor, classes: Tensor, probs: bool, smoothing: bool
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor | None]:
    r"""The (rows, C) sweeps of the eager pass's hard-target formulas, written for the compiler.

    Per row: the maximum :math:`m`, :math:`S = \sum_c e^{s_c}`, :math:`\sum_c e^{s_c} s_c`, :math:`\sum_c e^{2 s_c}`,
    the top-label prediction and, for label smoothing, :math:`\sum_c s_c`, with :math:`s = z - m`. Inductor
    fuses them into one loop over rows with two sweeps over each row (max, then exp with every sum at once), so
    the second sweep reads the row from cache. Anything computed from these per-row values in the same graph
    would join that loop with a differently vectorised loop and split it in two sweeps over all rows, each
    from memory: :func:`_row_terms` does that O(rows) rest.
    """
    scores = scores.to(torch.float64 if scores.dtype == torch.float64 else torch.float32)
    if probs:
        scores = scores.log()
    row_max = scores.amax(dim=1)
    shifted = scores - row_max[:, None]
    # e^s as 2^(s log2 e). Inductor's CPU code calls Sleef's exp2 for it, which on a 2-core AVX2 machine made this
    # kernel 1.15x the floor's time at 16384 x 1000 against 1.40x with its exp, and the results differ by ~1e-7.
    exp_shifted = (shifted * LOG2_E).exp2()
    # 0 * -inf is NaN: clamping the masked classes to the most negative finite value makes them contribute 0.
    finite_shifted = shifted.clamp_min(torch.finfo(shifted.dtype).min)
    # argmax with ties to the first index, as Tensor.max(dim) breaks them: the smallest class whose shifted score
    # is 0. Inductor fuses this min into the exp sweep; its own argmax would add a slower (value, int64 index)
    # sweep, and an in-kernel arange costs more per element than loading `classes` (floats, exact below 2**24).
    prediction = torch.where(shifted == 0, classes, scores.shape[1]).amin(dim=1)
    return (
        row_max,
        exp_shifted.sum(dim=1),
        (exp_shifted * finite_shifted).sum(dim=1),
        (exp_shifted * exp_shifted).sum(dim=1),
        prediction,
        shifted.sum(dim=1) if smoothing else None,
    )


def _row_terms(
    row_max: Tensor,
    partition: Tensor,
    weighted_shifted: Tensor,
    sum_sq_exp: Tensor,
    prediction: Tensor,
    shifted_sum: Tensor | None,
    scores: Tensor,
    target: Tensor,
    probs: bool,
    ignore_index: int | None,
    label_smoothing: float,
) -> tuple[Tensor | None, Tensor, Tensor, Tensor, Tensor, Tensor]:
    r"""The O(rows) rest, from :func:`_row_sums`' per-row values, as the eager pass's hard-target formulas.

    Cross-entropy :math:`\log S - s_y`, entropy :math:`\log S - \sum_c e^{s_c} s_c / S`, Brier
    :math:`\sum_c e^{2 s_c} / S^2 - 2 e^{s_y} / S + 1`, confidence :math:`1/S` and correctness; returns
    ``(counted, cross_entropy, entropy, brier, confidence, correct)``.
    """
    num_classes = scores.shape[1]
    log_partition = partition.log()
    entropy = log_partition - weighted_shifted / partition
    sum_sq_prob = sum_sq_exp / partition.square()

    counted = None if ignore_index is None else target != ignore_index
    out_of_range = (target < 0) | (target >= num_classes)
    usable = ~out_of_range if counted is None else counted & ~out_of_range
    # A target out of range is read as class 0, so that no index out of range reaches the gather (an error on
    # CPU, a device-side assert on CUDA); validation reports it (with ``validate_args=False`` it goes unnoticed).
    safe_target = torch.where(usable, target, 0)
    target_score = scores.gather(1, safe_target[:, None]).squeeze(1).to(row_max.dtype)
    if probs:
        target_score = target_score.log()
    target_shifted = target_score - row_max
    cross_entropy = log_partition - target_shifted
    if shifted_sum is not None:
        uniform_cross_entropy = log_partition - shifted_sum / num_classes
        cross_entropy = (1 - label_smoothing) * cross_entropy + label_smoothing * uniform_cross_entropy
    brier = sum_sq_prob - 2 * (target_shifted.exp() / partition) + 1
    correct = (prediction == safe_target.to(prediction.dtype)).to(row_max.dtype)
    return counted, cross_entropy, entropy, brier, partition.reciprocal(), correct
