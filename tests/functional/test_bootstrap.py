"""Streaming Poisson bootstrap: the weights, streaming equals one-shot, and coverage on data with known truth."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.stats import binomtest

from xent_plugin.functional.bootstrap import (
    _bootstrap_intervals_compute,
    bootstrap_intervals,
    bootstrap_reliability_table,
    bootstrap_stats,
    poisson_weights,
    wilson_interval,
)


@pytest.fixture(autouse=True)
def one_thread():
    # Many small tensor operations: on a shared machine extra intra-op threads only add contention.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_weights_have_the_poisson_one_distribution():
    weights = poisson_weights(torch.arange(200_000), num_replicates=5, seed=3).flatten()
    frequencies = torch.bincount(weights.long(), minlength=6)[:6].double() / weights.numel()
    expected = torch.tensor([math.exp(-1) / math.factorial(k) for k in range(6)], dtype=torch.float64)
    torch.testing.assert_close(frequencies, expected, atol=3e-3, rtol=0)


def test_weights_are_uncorrelated_across_replicates_rows_and_streams():
    rows = torch.arange(100_000)
    first, second = poisson_weights(rows, 8, seed=0, stream=0), poisson_weights(rows, 8, seed=0, stream=1)
    correlations = torch.corrcoef(torch.cat([first, second]))
    off_diagonal = correlations - torch.diag(torch.diag(correlations))
    assert float(off_diagonal.abs().max()) < 0.02  # 6 standard errors at 1e5 rows
    neighbours = torch.corrcoef(torch.stack([first[0, :-1], first[0, 1:]]))[0, 1]
    assert abs(float(neighbours)) < 0.02


def test_weights_depend_only_on_seed_stream_row_and_replicate():
    whole = poisson_weights(torch.arange(1000), 6, seed=7, stream=2)
    torch.testing.assert_close(poisson_weights(torch.arange(400, 700), 6, seed=7, stream=2), whole[:, 400:700])
    assert not torch.equal(poisson_weights(torch.arange(1000), 6, seed=8, stream=2), whole)
    assert not torch.equal(poisson_weights(torch.arange(1000), 6, seed=7, stream=3), whole)
    big_rows = torch.arange(1000) + (1 << 40)
    assert not torch.equal(poisson_weights(big_rows, 6, seed=7, stream=2), whole)


def test_compiled_weights_are_the_eager_weights(monkeypatch):
    from xent_plugin.functional import bootstrap

    if bootstrap.fused_pass.MODE == "off":
        pytest.skip("XENT_PLUGIN_FUSED=off turns the compiled weights off")
    blocks = [torch.arange(3 << 20, (3 << 20) + 1048), torch.arange(5, 5 + 700)]  # a full block, a short last one
    compiled = [poisson_weights(rows, 1000, seed=4, stream=1) for rows in blocks]
    assert not bootstrap._compile_failed
    monkeypatch.setattr(bootstrap, "COMPILE_MIN_WEIGHTS", float("inf"))
    for rows, weights in zip(blocks, compiled, strict=True):
        assert torch.equal(weights, poisson_weights(rows, 1000, seed=4, stream=1))


def logits_and_labels(rows: int, seed: int, classes: int = 5):
    generator = torch.Generator().manual_seed(seed)
    logits = 2 * torch.randn(rows, classes, generator=generator, dtype=torch.float64)
    labels = torch.multinomial((logits / 1.5).softmax(dim=1), 1, generator=generator).squeeze(1)
    return logits, labels


def test_streaming_equals_one_shot_exactly():
    logits, labels = logits_and_labels(1000, seed=0)
    whole = bootstrap_stats(logits, labels, num_replicates=50)
    first = bootstrap_stats(logits[:300], labels[:300], num_replicates=50)
    second = bootstrap_stats(logits[300:], labels[300:], num_replicates=50, first_row=first.rows)
    torch.testing.assert_close(first.replicate_bins + second.replicate_bins, whole.replicate_bins, rtol=1e-12, atol=0)
    torch.testing.assert_close(
        first.replicate_cross_entropy + second.replicate_cross_entropy,
        whole.replicate_cross_entropy,
        rtol=1e-12,
        atol=0,
    )


def test_point_values_are_the_plain_estimates():
    logits, labels = logits_and_labels(1000, seed=1)
    result = bootstrap_intervals(logits, labels, num_replicates=20)
    assert float(result["cross_entropy"]) == pytest.approx(F.cross_entropy(logits, labels).item(), rel=1e-12)
    accuracy = (logits.argmax(dim=1) == labels).double().mean().item()
    assert float(result["accuracy"]) == pytest.approx(accuracy, rel=1e-12)


def test_replicate_spread_matches_the_standard_error_of_the_mean():
    logits, labels = logits_and_labels(4000, seed=2)
    stats = bootstrap_stats(logits, labels, num_replicates=400)
    replicate_means = stats.replicate_cross_entropy / stats.replicate_count
    losses = F.cross_entropy(logits, labels, reduction="none")
    standard_error = losses.std() / math.sqrt(4000)
    # The standard deviation of 400 replicates is within ~7 % (2 standard errors) of the analytic value.
    assert float(replicate_means.std()) == pytest.approx(float(standard_error), rel=0.1)


def test_ignored_rows_get_no_weight_but_advance_the_row_counter():
    logits, labels = logits_and_labels(600, seed=3)
    ignored = labels.clone()
    ignored[::3] = -100
    stats = bootstrap_stats(logits, ignored, num_replicates=10, ignore_index=-100)
    assert stats.rows == 600 and float(stats.count) == 400
    weights = poisson_weights(torch.arange(600), 10)
    kept = ignored != -100
    torch.testing.assert_close(stats.replicate_count, weights[:, kept].sum(dim=1))


def test_reliability_table_whiskers_bracket_each_bins_accuracy():
    logits, labels = logits_and_labels(3000, seed=4)
    table = bootstrap_reliability_table(bootstrap_stats(logits, labels, num_replicates=200, n_bins=10))
    occupied = table["count"] >= 30
    assert bool((table["accuracy_lower"][occupied] <= table["accuracy"][occupied]).all())
    assert bool((table["accuracy"][occupied] <= table["accuracy_upper"][occupied]).all())
    assert bool(table["accuracy_lower"][table["count"] == 0].isnan().all())


def test_wilson_interval_matches_scipy():
    successes = torch.tensor([0.0, 3.0, 17.0, 40.0], dtype=torch.float64)
    trials = torch.tensor([5.0, 10.0, 20.0, 40.0], dtype=torch.float64)
    lower, upper = wilson_interval(successes, trials, 0.9)
    for k, n, low, high in zip(successes.tolist(), trials.tolist(), lower.tolist(), upper.tolist(), strict=True):
        expected = binomtest(int(k), int(n)).proportion_ci(0.9, method="wilson")
        assert (low, high) == pytest.approx((expected.low, expected.high), abs=1e-12)


def test_whiskers_of_an_all_correct_bin_are_not_degenerate():
    probs = torch.tensor([[0.95, 0.05]] * 12, dtype=torch.float64)
    table = bootstrap_reliability_table(
        bootstrap_stats(probs, torch.zeros(12, dtype=torch.long), num_replicates=50, n_bins=10, input_format="probs")
    )
    assert float(table["accuracy_upper"][9]) == pytest.approx(1.0)
    assert float(table["accuracy_lower"][9]) < 0.8


def test_interval_narrows_like_one_over_root_n():
    logits, labels = logits_and_labels(8000, seed=5)
    small = bootstrap_intervals(logits[:2000], labels[:2000], num_replicates=300)
    large = bootstrap_intervals(logits, labels, num_replicates=300)
    ratio = (small["cross_entropy_upper"] - small["cross_entropy_lower"]) / (
        large["cross_entropy_upper"] - large["cross_entropy_lower"]
    )
    assert float(ratio) == pytest.approx(2.0, rel=0.2)


class KnownPopulation:
    """200 prototypes, drawn uniformly, each with fixed logits and a true label distribution at temperature 2.

    The model is twice as confident as the truth, so its expected cross-entropy and its population ECE (the
    binned ECE of infinitely many draws) are known exactly.
    """

    def __init__(self, n_bins: int = 10, seed: int = 0) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.logits = 2 * torch.randn(200, 5, generator=generator, dtype=torch.float64)
        self.truth = (self.logits / 2).softmax(dim=1)
        log_q = self.logits.log_softmax(dim=1)
        self.cross_entropy = float(-(self.truth * log_q).sum(dim=1).mean())
        confidence, prediction = log_q.exp().max(dim=1)
        accuracy = self.truth.gather(1, prediction[:, None]).squeeze(1)
        bins = torch.zeros(3, n_bins, dtype=torch.float64)
        index = (confidence * n_bins).long().clamp(max=n_bins - 1)
        bins.index_add_(1, index, torch.stack([torch.ones(200, dtype=torch.float64), confidence, accuracy]))
        self.ece = float(((bins[2] - bins[1]).abs() / 200).sum())

    def draw(self, rows: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        prototypes = torch.randint(0, 200, (rows,), generator=generator)
        labels = torch.multinomial(self.truth[prototypes], 1, generator=generator).squeeze(1)
        return self.logits[prototypes], labels


@pytest.mark.slow
def test_ninety_five_percent_intervals_cover_the_known_truth():
    population = KnownPopulation()
    generator = torch.Generator().manual_seed(1)
    covered = {"cross_entropy": 0, "ece": 0}
    simulations = 200
    for simulation in range(simulations):
        logits, labels = population.draw(1000, generator)
        stats = bootstrap_stats(logits, labels, num_replicates=100, n_bins=10, seed=simulation)
        result = _bootstrap_intervals_compute(stats)
        for name in covered:
            truth = getattr(population, name)
            covered[name] += int(float(result[f"{name}_lower"]) <= truth <= float(result[f"{name}_upper"]))
    # Over 1000 simulations (python -m tests.functional.test_bootstrap) coverage is 93.0 % for the cross-entropy
    # and 93.7 % for the ECE; the binomial standard error over 200 is 1.8 %.
    assert 0.88 <= covered["cross_entropy"] / simulations <= 0.99
    # The binned ECE is biased upward (|mean| of a noisy gap), so its percentile interval under-covers a little
    # even when the gaps are large; it stays close to nominal here.
    assert covered["ece"] / simulations >= 0.85


def test_known_population_truth_is_what_large_samples_converge_to():
    population = KnownPopulation()
    logits, labels = population.draw(100_000, torch.Generator().manual_seed(2))
    result = bootstrap_intervals(logits, labels, num_replicates=2, n_bins=10)
    # Standard errors at 1e5 rows: about 3e-3 for the cross-entropy and 2e-3 for the ECE.
    assert float(result["cross_entropy"]) == pytest.approx(population.cross_entropy, abs=1e-2)
    assert float(result["ece"]) == pytest.approx(population.ece, abs=1e-2)
    assert np.isfinite(population.ece) and population.ece > 0.1


if __name__ == "__main__":  # coverage over 1000 simulations of the known population above, at B = 200
    torch.set_num_threads(1)
    population = KnownPopulation()
    generator = torch.Generator().manual_seed(1)
    hits = {"cross_entropy": 0, "ece": 0}
    for simulation in range(1000):
        logits, labels = population.draw(1000, generator)
        result = _bootstrap_intervals_compute(
            bootstrap_stats(logits, labels, num_replicates=200, n_bins=10, seed=simulation)
        )
        for name in hits:
            hits[name] += int(
                float(result[f"{name}_lower"]) <= getattr(population, name) <= float(result[f"{name}_upper"])
            )
    print({name: count / 1000 for name, count in hits.items()}, population.cross_entropy, population.ece)
