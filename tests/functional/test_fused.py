"""The compiled softmax pass agrees with the eager pass, compiles once per kind of input, and falls back by itself;
the eager pass gives the same sums whether its chunks run on worker threads or inline.

Each distinct dtype, class count or option set costs one inductor compile (seconds on 2 cores), so the cases
share kernels: every (8-class) case runs in float32 with hard targets unless it is about another dtype or
option. No test times anything.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from torch._dynamo.utils import counters

from xent_plugin.functional import fused, softmax_stats
from xent_plugin.functional.calibration_error import _calibration_error_compute
from xent_plugin.functional.softmax_stats import SufficientStats, row_statistics, sufficient_stats

pytestmark = pytest.mark.timeout(900)

CLASSES = 8
TOLERANCE = 1e-6


def _logits(rows: int, classes: int = CLASSES, seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (3 * torch.randn(rows, classes, generator=g)).to(dtype)


def _labels(rows: int, classes: int = CLASSES, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, classes, (rows,), generator=torch.Generator().manual_seed(seed))


def _values(stats: SufficientStats) -> dict[str, float]:
    return {
        "cross_entropy": (stats.cross_entropy / stats.count).item(),
        "entropy": (stats.entropy / stats.count).item(),
        "brier": (stats.brier / stats.count).item(),
        "accuracy": (stats.correct / stats.count).item(),
        "ece": _calibration_error_compute(stats.bins, "l1").item(),
        "mce": _calibration_error_compute(stats.bins, "max").item(),
        "count": stats.count.item(),
        "bin_counts": stats.bins[0].tolist(),
    }


def _assert_paths_agree(preds: torch.Tensor, target: torch.Tensor, **kwargs) -> None:
    eager = _values(sufficient_stats(preds, target, n_bins=15, fused=False, **kwargs))
    compiled = _values(sufficient_stats(preds, target, n_bins=15, fused=True, **kwargs))
    assert compiled["count"] == eager["count"]
    assert compiled["accuracy"] == eager["accuracy"]
    for name in ("cross_entropy", "entropy", "brier", "ece", "mce"):
        assert compiled[name] == pytest.approx(eager[name], rel=TOLERANCE, abs=TOLERANCE), name
    # A confidence within rounding of a bin edge may land on either side; anything more is a bug.
    moved = sum(abs(a - b) for a, b in zip(compiled["bin_counts"], eager["bin_counts"], strict=True))
    assert moved <= 2


@pytest.fixture(autouse=True)
def compiled_pass_available(monkeypatch):
    """Every test starts with the fused pass enabled and leaves the process's switch as it found it."""
    monkeypatch.setattr(fused, "MODE", "auto")
    monkeypatch.setattr(fused, "_failed", False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a fallback in these tests would compare eager to eager
        yield


def test_hard_targets_agree():
    _assert_paths_agree(_logits(1000), _labels(1000))


def test_logits_far_apart_and_near_certain_rows_agree():
    # The compiled pass takes e^s as 2^(s log2 e): rows whose scores spread over hundreds of nats (terms down to
    # e^-700) and near one-hot rows must still agree with the eager pass's exp.
    logits = 60 * _logits(1000)
    logits[::5] = logits[::5] / 1000
    _assert_paths_agree(logits, _labels(1000))


def test_masked_classes_and_ties_agree():
    logits = _logits(300)
    labels = _labels(300)
    logits[::3, 5] = float("-inf")
    logits[::7, 0] = float("-inf")
    # Ties at the maximum: Tensor.max(dim) picks the first index, so a later tied target is not "correct".
    top = logits.amax(dim=1)
    logits[:40, 1] = top[:40]
    logits[:40, 2] = top[:40]
    labels[:20] = 1
    labels[20:40] = 2
    _assert_paths_agree(logits, labels)
    expected = (logits.argmax(dim=1) == labels).double().mean().item()
    for path in (False, True):
        stats = sufficient_stats(logits, labels, fused=path)
        assert (stats.correct / stats.count).item() == expected


def test_a_target_on_a_masked_class_gives_infinite_cross_entropy_on_both_paths():
    logits = _logits(4)
    logits[0, 3] = float("-inf")
    labels = torch.tensor([3, 0, 1, 2])
    for path in (False, True):
        stats = sufficient_stats(logits, labels, fused=path)
        assert stats.cross_entropy.item() == float("inf")
        assert torch.isfinite(stats.entropy)


def test_ignore_index_and_label_smoothing_agree():
    labels = _labels(500)
    labels[::4] = -100
    _assert_paths_agree(_logits(500), labels, ignore_index=-100, label_smoothing=0.1)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float64])
def test_other_input_dtypes_agree(dtype):
    _assert_paths_agree(_logits(400, dtype=dtype), _labels(400))


def test_probability_inputs_agree():
    _assert_paths_agree(_logits(400).softmax(dim=1), _labels(400), input_format="probs")


def test_token_layout_with_a_large_vocabulary_agrees():
    vocabulary = 8192  # above inductor's 4096-element step, where its sums switch to cascade summation
    logits = _logits(2 * 24, vocabulary).view(2, 24, vocabulary)
    labels = _labels(2 * 24, vocabulary).view(2, 24)
    _assert_paths_agree(logits, labels, class_dim=-1)


def test_bfloat16_large_vocabulary_with_masked_classes_ties_and_ignored_nan_rows_agrees():
    vocabulary = 8193  # past inductor's cascade-sum threshold, odd so the last vector step is partial
    logits = _logits(64, vocabulary, dtype=torch.bfloat16)
    labels = _labels(64, vocabulary)
    logits[::3, 100:4000] = float("-inf")
    top = logits.float().amax(dim=1)
    logits[:16, 2] = top[:16]  # a tie with a later class: the first index is the prediction
    logits[:16, 8191] = top[:16]
    labels[:8] = 8191
    logits[-4:] = float("nan")  # ignored rows may hold anything
    labels[-4:] = -100
    _assert_paths_agree(logits, labels, ignore_index=-100)
    expected = (logits[:-4].float().argmax(dim=1) == labels[:-4]).double().mean().item()
    stats = sufficient_stats(logits, labels, ignore_index=-100, fused=True)
    assert (stats.correct / stats.count).item() == expected


def test_class_dimension_first_with_spatial_dimensions_agrees():
    logits = _logits(2 * 5 * 7).view(2, 5, 7, CLASSES).movedim(-1, 1)
    labels = _labels(2 * 5 * 7).view(2, 5, 7)
    _assert_paths_agree(logits, labels, class_dim=1)


def test_per_row_statistics_agree():
    logits, labels = _logits(200), _labels(200)
    eager = next(row_statistics(logits, labels, fused=False))
    compiled = next(row_statistics(logits, labels, fused=True))
    for name in ("cross_entropy", "entropy", "brier", "confidence", "correct"):
        torch.testing.assert_close(getattr(compiled, name), getattr(eager, name), rtol=TOLERANCE, atol=TOLERANCE)


def test_a_new_batch_size_reuses_the_compiled_kernel():
    sufficient_stats(_logits(64), _labels(64), n_bins=15, fused=True)
    graphs = counters["stats"]["unique_graphs"]
    for rows in (65, 1000, 3, 777):
        sufficient_stats(_logits(rows), _labels(rows), n_bins=15, fused=True)
    assert counters["stats"]["unique_graphs"] == graphs


def test_invalid_scores_are_rejected_as_on_the_eager_path():
    logits = _logits(10)
    logits[4, 2] = float("nan")
    with pytest.raises(ValueError, match="`preds` contains NaN"):
        sufficient_stats(logits, _labels(10), fused=True)


def test_auto_takes_the_fused_pass_only_for_large_hard_target_batches():
    large = torch.zeros(1, 1).expand(fused.AUTO_MIN_ELEMENTS // 1024, 1024)  # no memory behind it
    small = torch.zeros(64, CLASSES)
    assert fused.applies(None, large, soft=False, has_reference=False)
    assert not fused.applies(None, small, soft=False, has_reference=False)
    assert fused.applies(True, small, soft=False, has_reference=False)
    assert not fused.applies(False, large, soft=False, has_reference=False)
    assert not fused.applies(True, small, soft=True, has_reference=False)
    assert not fused.applies(True, small, soft=False, has_reference=True)


def test_mode_off_overrides_a_request_for_the_fused_pass(monkeypatch):
    monkeypatch.setattr(fused, "MODE", "off")
    assert not fused.applies(True, torch.zeros(4, CLASSES), soft=False, has_reference=False)


def test_a_failing_compile_warns_once_and_the_eager_pass_takes_over(monkeypatch):
    def broken_kernel(*args):
        raise RuntimeError("no C++ compiler")

    monkeypatch.setattr(fused, "_kernel", lambda *args: broken_kernel)
    logits, labels = _logits(100), _labels(100)
    with pytest.warns(RuntimeWarning, match="no C\\+\\+ compiler") as caught:
        stats = sufficient_stats(logits, labels, n_bins=15, fused=True)
        again = sufficient_stats(logits, labels, n_bins=15, fused=True)
    assert len([w for w in caught if issubclass(w.category, RuntimeWarning)]) == 1
    expected = _values(sufficient_stats(logits, labels, n_bins=15, fused=False))
    assert _values(stats) == expected
    assert _values(again) == expected
    assert not fused.applies(True, logits, soft=False, has_reference=False)


def test_past_the_graph_limit_a_new_kind_runs_eagerly_without_compiling_half_of_its_pass(monkeypatch):
    monkeypatch.setattr(fused, "_kernels", {})
    monkeypatch.setattr(fused, "_warned_full", False)
    monkeypatch.setattr(fused, "MAX_GRAPHS", 1)  # room for one of the two graphs a kind needs
    logits, labels = _logits(50), _labels(50)
    with pytest.warns(RuntimeWarning, match="compiled graphs of the softmax pass already exist"):
        stats = sufficient_stats(logits, labels, n_bins=15, fused=True)
    assert _values(stats) == _values(sufficient_stats(logits, labels, n_bins=15, fused=False))
    assert [key[0] for key in fused._kernels] == ["_row_terms"]  # claimed, never called: nothing compiled


def test_eager_chunks_on_worker_threads_give_the_same_sums_as_inline(monkeypatch):
    logits, labels = _logits(3000, 500), _labels(3000, 500)  # several chunks
    threaded = sufficient_stats(logits, labels, n_bins=15, fused=False)
    monkeypatch.setattr(softmax_stats, "chunk_workers", lambda preds: 1)
    inline = sufficient_stats(logits, labels, n_bins=15, fused=False)
    for name in ("count", "cross_entropy", "entropy", "brier", "correct", "bins"):
        assert torch.equal(getattr(threaded, name), getattr(inline, name)), name


def test_an_error_in_a_later_chunk_surfaces_from_the_worker_threads():
    logits = _logits(3000, 500)
    logits[-1, 7] = float("inf")
    with pytest.raises(ValueError, match=r"`preds` contains \+inf"):
        sufficient_stats(logits, _labels(3000, 500), fused=False)
