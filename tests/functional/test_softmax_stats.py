"""sufficient_stats: the one softmax pass, its float64 sums, and its precision on 16-bit inputs."""

from __future__ import annotations

import math
import threading

import pytest
import scipy.stats
import torch
import torch.nn.functional as F

from xent_plugin.functional import (
    brier_score,
    cross_entropy,
    entropy,
    kl_divergence,
    reliability_table,
    sufficient_stats,
)
from xent_plugin.functional.softmax_stats import row_statistics

HALF_DTYPES = [torch.bfloat16, torch.float16]
# Relative rounding of one input value: bf16 keeps 8 significant bits, fp16 11.
INPUT_ROUNDING = {torch.bfloat16: 2.0**-8, torch.float16: 2.0**-11}


def _batch(seed: int, rows: int = 256, classes: int = 8) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    logits = 2 * torch.randn(rows, classes, generator=g)
    labels = torch.randint(0, classes, (rows,), generator=g)
    reference = torch.randn(rows, classes, generator=g).softmax(dim=1)
    return logits, labels, reference


def _float64_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return F.cross_entropy(logits.double(), labels).item()


def _float64_entropy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return float(scipy.stats.entropy(logits.double().softmax(dim=1).numpy(), axis=1).mean())


def _float64_brier(logits: torch.Tensor, labels: torch.Tensor) -> float:
    one_hot = F.one_hot(labels, logits.shape[1]).double()
    return (logits.double().softmax(dim=1) - one_hot).square().sum(dim=1).mean().item()


REFERENCES = {
    "cross_entropy": (cross_entropy, _float64_cross_entropy),
    "entropy": (lambda preds, labels: entropy(preds), _float64_entropy),
    "brier_score": (brier_score, _float64_brier),
}


@pytest.mark.parametrize("name", REFERENCES)
@pytest.mark.parametrize("dtype", HALF_DTYPES)
def test_half_precision_logits_match_float64_on_the_same_rounded_values(dtype, name):
    logits, labels, _ = _batch(0)
    rounded = logits.to(dtype)
    metric, reference = REFERENCES[name]
    assert metric(rounded, labels).item() == pytest.approx(reference(rounded, labels), rel=1e-6)


@pytest.mark.parametrize("name", REFERENCES)
@pytest.mark.parametrize("dtype", HALF_DTYPES)
def test_half_precision_logits_stay_within_input_rounding_of_the_unrounded_value(dtype, name):
    logits, labels, _ = _batch(1)
    metric, reference = REFERENCES[name]
    # |logit| is a few units, so rounding moves each by a few units of INPUT_ROUNDING; 8x covers it.
    tolerance = 8 * INPUT_ROUNDING[dtype] * logits.abs().max().item()
    assert metric(logits.to(dtype), labels).item() == pytest.approx(reference(logits, labels), abs=tolerance)


@pytest.mark.parametrize("dtype", HALF_DTYPES)
def test_half_precision_model_logits_give_kl_of_float64_on_the_same_rounded_values(dtype):
    logits, _, reference = _batch(2)
    rounded = logits.to(dtype)
    expected = scipy.stats.entropy(reference.double().numpy(), rounded.double().softmax(dim=1).numpy(), axis=1).mean()
    assert kl_divergence(rounded, reference).item() == pytest.approx(float(expected), rel=1e-6)


@pytest.mark.parametrize(
    "dtype",
    [
        pytest.param(
            torch.bfloat16,
        ),
        torch.float16,
    ],
)
def test_half_precision_soft_labels_are_accepted_and_match_float64(dtype):
    logits, _, reference = _batch(3)
    rounded_target = reference.to(dtype)
    expected = F.cross_entropy(logits.double(), rounded_target.double())
    assert cross_entropy(logits, rounded_target).item() == pytest.approx(expected.item(), rel=1e-6)


@pytest.mark.parametrize("dtype", HALF_DTYPES)
def test_half_precision_probabilities_are_accepted_and_renormalised(dtype):
    logits, labels, _ = _batch(4)
    rounded = logits.softmax(dim=1).to(dtype)
    as_float64 = rounded.double()
    expected = -(as_float64 / as_float64.sum(dim=1, keepdim=True)).log().gather(1, labels[:, None]).mean()
    assert cross_entropy(rounded, labels, input_format="probs").item() == pytest.approx(expected.item(), rel=1e-6)


def test_float16_logits_near_the_float16_limit_stay_finite():
    logits = torch.tensor([[60000.0, 0.0, -60000.0], [-3.0, 65000.0, 64000.0]], dtype=torch.float16)
    labels = torch.tensor([1, 2])
    expected = _float64_cross_entropy(logits, labels)
    assert cross_entropy(logits, labels).item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64])
def test_every_sum_is_float64_whatever_the_input_dtype(dtype):
    logits, labels, reference = _batch(5, rows=16)
    stats = sufficient_stats(logits.to(dtype), labels, reference.to(dtype), n_bins=5)
    sums = [stats.count, stats.cross_entropy, stats.entropy, stats.brier, stats.correct, stats.kl, stats.bins]
    assert all(s.dtype == torch.float64 for s in sums)


def test_masked_classes_give_the_statistics_of_the_distribution_without_them():
    logits, labels, _ = _batch(6, classes=5)
    labels = labels.clamp_max(3)
    dropped = sufficient_stats(logits[:, :4], labels, n_bins=10)
    masked_logits = logits.clone()
    masked_logits[:, 4] = float("-inf")
    masked = sufficient_stats(masked_logits, labels, n_bins=10)
    for name in ["count", "cross_entropy", "entropy", "brier", "correct"]:
        assert getattr(masked, name).item() == pytest.approx(getattr(dropped, name).item(), rel=1e-6), name
    torch.testing.assert_close(masked.bins, dropped.bins, rtol=1e-6, atol=1e-6)


def test_reference_statistics_satisfy_cross_entropy_decomposition_per_batch():
    logits, labels, reference = _batch(7)
    stats = sufficient_stats(logits.double(), labels, reference.double())
    decomposition = stats.reference_entropy + stats.kl
    assert stats.reference_cross_entropy.item() == pytest.approx(decomposition.item(), rel=1e-12)


def test_reference_statistics_match_scipy():
    logits, labels, reference = _batch(8)
    q = logits.double().softmax(dim=1).numpy()
    p = reference.double().numpy()
    stats = sufficient_stats(logits, labels, reference)
    assert stats.reference_count.item() == 256
    assert (stats.kl / stats.reference_count).item() == pytest.approx(
        float(scipy.stats.entropy(p, q, axis=1).mean()), rel=1e-5
    )
    assert (stats.reference_entropy / stats.reference_count).item() == pytest.approx(
        float(scipy.stats.entropy(p, axis=1).mean()), rel=1e-6
    )


def test_accuracy_sum_counts_rows_whose_top_logit_is_the_label():
    logits, labels, _ = _batch(9)
    stats = sufficient_stats(logits, labels)
    assert stats.correct.item() == (logits.argmax(dim=1) == labels).sum().item()


def test_adding_the_sums_of_two_halves_gives_the_sums_of_the_whole():
    logits, labels, reference = _batch(10)
    whole = sufficient_stats(logits, labels, reference, n_bins=7)
    merged = sufficient_stats(logits[:100], labels[:100], reference[:100], n_bins=7)
    merged.add_(sufficient_stats(logits[100:], labels[100:], reference[100:], n_bins=7))
    for name in ["count", "cross_entropy", "entropy", "brier", "correct", "reference_count", "kl"]:
        assert getattr(merged, name).item() == pytest.approx(getattr(whole, name).item(), rel=1e-12), name
    torch.testing.assert_close(merged.bins, whole.bins, rtol=1e-12, atol=0)


def test_row_statistics_are_the_per_row_terms_that_sufficient_stats_sums():
    logits, labels, _ = _batch(11)
    labels[::5] = -100
    (rows,) = list(row_statistics(logits, labels, ignore_index=-100))
    per_row = F.cross_entropy(logits.double(), labels, ignore_index=-100, reduction="none")
    counted = labels != -100
    assert rows.counted.tolist() == counted.tolist()
    torch.testing.assert_close(rows.cross_entropy[counted].double(), per_row[counted], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(rows.confidence.double(), logits.double().softmax(dim=1).amax(dim=1), rtol=1e-6, atol=0)


def test_top_label_histogram_sums_match_the_reliability_table_totals():
    logits, labels, _ = _batch(12)
    stats = sufficient_stats(logits, labels, n_bins=15)
    table = reliability_table(stats.bins)
    filled = table["count"] > 0
    assert table["count"].sum().item() == 256
    accuracy = (table["accuracy"][filled] * table["count"][filled]).sum().item() / 256
    assert accuracy == pytest.approx(stats.correct.item() / 256, rel=1e-12)
    assert not math.isnan(accuracy)


def test_a_small_batch_runs_whole_on_one_single_threaded_worker():
    # Spread over OpenMP threads, each of a small batch's ~40 ops would end in a barrier.
    seen = []

    def where_it_runs(shifted, target_score, counted):
        seen.append((threading.current_thread().name, torch.get_num_threads()))
        return shifted.new_zeros(())

    logits, target = torch.randn(64, 10), torch.randint(0, 10, (64,))
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        stats = sufficient_stats(logits, target, n_bins=15, chunk_reducers=[where_it_runs])
    finally:
        torch.set_num_threads(previous)
    ((thread, threads),) = seen
    assert thread.startswith("xent-chunks") and threads == 1
    torch.testing.assert_close(stats.cross_entropy, F.cross_entropy(logits.double(), target, reduction="sum"))
