"""Class-wise calibration error, against a numpy reference and the uncertainty-calibration package."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xent_plugin.functional.classwise_calibration_error import classwise_bins, classwise_calibration_error


def numpy_classwise(probs: np.ndarray, observed: np.ndarray, n_bins: int, norm: str) -> float:
    """Kull et al.'s classwise-ECE (and its l2 / max variants) written out per class and bin."""
    rows, classes = probs.shape
    per_class, gaps = [], []
    for c in range(classes):
        index = np.minimum((probs[:, c] * n_bins).astype(int), n_bins - 1)
        total = 0.0
        for b in range(n_bins):
            members = index == b
            if members.any():
                gap = abs(observed[members, c].mean() - probs[members, c].mean())
                gaps.append(gap)
                total += members.sum() / rows * (gap if norm == "l1" else gap**2)
        per_class.append(total)
    if norm == "l1":
        return float(np.mean(per_class))
    if norm == "l2":
        return float(np.sqrt(np.mean(per_class)))
    return float(max(gaps))


def logits_and_labels(rows: int = 3000, classes: int = 5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    logits = 2 * torch.randn(rows, classes, generator=generator, dtype=torch.float64)
    labels = torch.multinomial((logits / 1.5).softmax(dim=1), 1, generator=generator).squeeze(1)
    return logits, labels


@pytest.mark.parametrize("norm", ["l1", "l2", "max"])
def test_matches_numpy_reference(norm):
    logits, labels = logits_and_labels()
    probs = logits.softmax(dim=1).numpy()
    expected = numpy_classwise(probs, np.eye(5)[labels.numpy()], 15, norm)
    assert float(classwise_calibration_error(logits, labels, norm=norm)) == pytest.approx(expected, rel=1e-10)


def test_soft_targets_count_the_target_probability_of_each_class():
    logits, _ = logits_and_labels(seed=1)
    generator = torch.Generator().manual_seed(2)
    target = torch.randn(3000, 5, generator=generator, dtype=torch.float64).softmax(dim=1)
    expected = numpy_classwise(logits.softmax(dim=1).numpy(), target.numpy(), 10, "l1")
    assert float(classwise_calibration_error(logits, target, n_bins=10)) == pytest.approx(expected, rel=1e-10)


def test_ignored_rows_are_not_counted():
    logits, labels = logits_and_labels(seed=3)
    ignored = labels.clone()
    ignored[::3] = -100
    kept = ignored != -100
    expected = classwise_calibration_error(logits[kept], labels[kept])
    assert float(classwise_calibration_error(logits, ignored, ignore_index=-100)) == pytest.approx(float(expected))


def test_masked_classes_get_probability_zero():
    logits, labels = logits_and_labels(seed=4)
    logits[:, 4] = float("-inf")
    labels = labels.clamp(max=3)
    bins = classwise_bins(logits, labels)
    assert float(bins[0, 4, 0]) == 3000 and float(bins[1, 4].sum()) == 0
    expected = numpy_classwise(logits.softmax(dim=1).numpy(), np.eye(5)[labels.numpy()], 15, "l1")
    assert float(classwise_calibration_error(logits, labels)) == pytest.approx(expected, rel=1e-10)


def test_class_dimension_last_gives_the_same_histogram():
    logits, labels = logits_and_labels(seed=5)
    tokens = logits.reshape(30, 100, 5)
    torch.testing.assert_close(
        classwise_bins(tokens, labels.reshape(30, 100), class_dim=-1), classwise_bins(logits, labels)
    )


@pytest.mark.parametrize("debias", [False, True])
def test_l2_matches_uncertainty_calibration_marginal_error(debias):
    calibration = pytest.importorskip("calibration.utils")
    logits, labels = logits_and_labels(seed=6)
    probs = logits.softmax(dim=1).numpy()
    reference = calibration.lower_bound_scaling_ce(
        probs,
        labels.numpy(),
        p=2,
        debias=debias,
        num_bins=15,
        binning_scheme=calibration.get_equal_prob_bins,
        mode="marginal",
    )
    ours = classwise_calibration_error(logits, labels, norm="l2", debias=debias)
    assert float(ours) == pytest.approx(reference, abs=1e-12)


def test_debias_needs_the_l2_norm():
    logits, labels = logits_and_labels(rows=10)
    with pytest.raises(ValueError, match="`debias=True` needs norm='l2'"):
        classwise_calibration_error(logits, labels, debias=True)


def test_nan_logits_are_rejected():
    logits, labels = logits_and_labels(rows=10)
    logits[3, 1] = float("nan")
    with pytest.raises(ValueError, match="`preds` contains NaN"):
        classwise_calibration_error(logits, labels)
