r"""The fused pass: the per-row softmax statistics of hard-target batches as one ``torch.compile`` kernel.

The eager pass in :mod:`~xent_plugin.functional.softmax_stats` runs about eight ATen sweeps over each chunk of
logits. Compiled by inductor, :func:`_row_sums` becomes one loop over rows that sweeps each row twice (max,
then exp with every sum at once), the second sweep reading the row from L1/L2, and writes only O(rows)
outputs: no (rows, C) temporary, a row-sized buffer per thread at most. The O(rows) rest (logs, the target's
score, cross-entropy, Brier, correctness) runs eagerly after it: in the same graph it would join that loop
with a loop vectorised over rows, and inductor would then split max and exp into two sweeps over all rows,
each reading the logits from memory. On a 2-core CPU with 2 threads a whole update costs 1.3-1.6x a compiled
one-pass logsumexp (bf16 4096 x 32000 on a quiet machine: 1.49x, against 1.80x with the split sweeps), and
the eager pass 2.6-3.8x (``scripts/bench.py`` measures both). Inductor has no online softmax for CPU, and
cutting rows into vocabulary blocks that stay in L1 (an online maximum across blocks) measured no faster there.

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
``input_format == "probs"`` and label smoothing on or off, up to :data:`MAX_KERNELS` kinds (targets and
``ignore_index`` only enter the eager rest).

Falling back. Any exception from compiling or running the kernel (no C++ compiler, an unsupported backend)
disables the fused pass for the rest of the process with one ``RuntimeWarning``, and the caller redoes the
chunk eagerly, so a genuine input error still surfaces with the eager pass's message.
"""

from __future__ import annotations

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

# Scores per kernel call (64 MiB of fp32). The kernel keeps no chunk-sized temporary, so this bounds only the copy
# that a class dimension other than the last needs; each call costs ~0.1-0.2 ms of dynamo and wrapper overhead.
# Calls run one after another in the calling thread, each on all its OpenMP threads: inductor's CPU kernels hold
# the GIL, so the eager pass's chunk-per-thread scheme would run them one at a time.
CHUNK_ELEMENTS = 1 << 24

# Rows per kernel call when the class dimension is last and chunks are views: a call costs dynamo's guards and
# one barrier per sweep on each thread, and only its per-row outputs (a few floats a row) grow with it.
ROWS_PER_CALL = 1 << 16

# Kinds of input (dtypes, class count, options) the process compiles a kernel for; later kinds run eagerly.
MAX_KERNELS = 16

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

    That is after a failure (warned once, and for good) or for a new kind of input once :data:`MAX_KERNELS`
    kernels exist (warned once). The compiled kernel makes the (rows, C) sweeps; the O(rows) rest is eager.
    """
    smoothing = label_smoothing > 0
    sums = _run(_row_sums, scores, _class_indices(scores.shape[1], scores.device), input_format, smoothing)
    if sums is None:
        return None
    row_max, partition, weighted_shifted, sum_sq_exp, prediction, shifted_sum = sums
    num_classes = scores.shape[1]
    log_partition = partition.log()
    entropy = log_partition - weighted_shifted / partition
    sum_sq_prob = sum_sq_exp / partition.square()

    counted = None if ignore_index is None else target != ignore_index
    out_of_range = (target < 0) | (target >= num_classes)
    if counted is not None:
        out_of_range = out_of_range & counted
    usable = ~out_of_range if counted is None else counted & ~out_of_range
    # A target out of range is read as class 0, so that no index out of range reaches the gather (an error on
    # CPU, a device-side assert on CUDA); validation reports it (with ``validate_args=False`` it goes unnoticed).
    safe_target = torch.where(usable, target, 0)
    target_score = scores.gather(1, safe_target[:, None]).squeeze(1).to(row_max.dtype)
    if input_format == "probs":
        target_score = target_score.log()
    target_shifted = target_score - row_max
    cross_entropy = log_partition - target_shifted
    if smoothing:
        uniform_cross_entropy = log_partition - shifted_sum / num_classes
        cross_entropy = (1 - label_smoothing) * cross_entropy + label_smoothing * uniform_cross_entropy
    brier = sum_sq_prob - 2 * (target_shifted.exp() / partition) + 1
    correct = (prediction == safe_target.to(prediction.dtype)).to(row_max.dtype)
    return HardTargetRows(row_max, partition, counted, cross_entropy, entropy, brier, correct)


def reset() -> None:
    """Forget the compiled kernels and any earlier failure (for tests and after changing torch settings)."""
    global _failed, _warned_full
    with _kernels_lock:
        _kernels.clear()
        _classes.clear()
    _failed = _warned_full = False


def _run(function: Callable, scores: Tensor, classes: Tensor, input_format: str, smoothing: bool) -> tuple | None:
    global _failed
    if _failed:
        return None
    try:
        kernel = _kernel(function, scores, input_format, smoothing)
        if kernel is None:
            return None
        torch._dynamo.maybe_mark_dynamic(scores, 0)
        return kernel(scores, classes, input_format, smoothing)
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


def _kernel(function: Callable, scores: Tensor, input_format: str, smoothing: bool) -> Callable | None:
    """The compiled kernel for this kind of input, made on first use; None past :data:`MAX_KERNELS`."""
    global _warned_full
    kind = (scores.dtype, scores.shape[1], input_format == "probs", smoothing)
    with _kernels_lock:
        kernel = _kernels.get(kind)
        if kernel is None and len(_kernels) < MAX_KERNELS:
            # A code object of its own per kind: dynamo keeps its cache and its recompile limit (8) per code object,
            # so kinds do not use up one another's budget, and no global dynamo setting has to change.
            code = function.__code__.replace(co_name=f"{function.__name__}_{len(_kernels)}")
            own = types.FunctionType(code, function.__globals__, code.co_name)
            kernel = _kernels[kind] = torch.compile(own, dynamic=False, fullgraph=True)
        elif kernel is None and not _warned_full:
            _warned_full = True
            warnings.warn(
                f"xent_plugin: {MAX_KERNELS} kinds of input already have a compiled softmax pass; new kinds "
                "(dtype, class count, options) use the eager pass.",
                RuntimeWarning,
                stacklevel=4,
            )
    return kernel


def _row_sums(
    scores: Tensor, classes: Tensor, input_format: str, smoothing: bool
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor | None]:
    r"""The (rows, C) sweeps of the eager pass's hard-target formulas, written for the compiler.

    Per row: the maximum :math:`m`, :math:`S = \sum_c e^{s_c}`, :math:`\sum_c e^{s_c} s_c`, :math:`\sum_c e^{2 s_c}`,
    the top-label prediction and, for label smoothing, :math:`\sum_c s_c`, with :math:`s = z - m`. Inductor
    fuses them into one loop over rows with two sweeps over each row (max, then exp with every sum at once), so
    the second sweep reads the row from cache. Anything computed from these per-row values in the same graph
    would join that loop with a differently vectorised loop and split it in two sweeps over all rows, each
    from memory: the caller does that O(rows) rest.
    """
    scores = scores.to(torch.float64 if scores.dtype == torch.float64 else torch.float32)
    if input_format == "probs":
        scores = scores.log()
    row_max = scores.amax(dim=1)
    shifted = scores - row_max[:, None]
    exp_shifted = shifted.exp()
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
