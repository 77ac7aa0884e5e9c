"""Bad constructor arguments are rejected at construction, with the argument, the given value and the choices."""

from __future__ import annotations

import pytest
import torch

from xent_plugin.metrics import (
    BinaryCrossEntropy,
    BrierScore,
    CalibrationError,
    CrossEntropy,
    Entropy,
    KLDivergence,
    Perplexity,
    XentMetrics,
)

BAD_ARGUMENTS = {
    "cross_entropy_input_format": (lambda: CrossEntropy(input_format="softmax"), r"`input_format` must be one of"),
    "perplexity_input_format": (lambda: Perplexity(input_format="probabilities"), r"`input_format` must be one of"),
    "entropy_input_format": (lambda: Entropy(input_format="logit"), r"`input_format` must be one of"),
    "bce_input_format": (lambda: BinaryCrossEntropy(input_format="log_probs"), r"`input_format` must be one of"),
    "binary_task_log_probs": (
        lambda: CalibrationError(task="binary", input_format="log_probs"),
        r"`input_format` must be one of \('logits', 'probs'\), got 'log_probs'",
    ),
    "kl_target_format": (lambda: KLDivergence(target_format="prob"), r"`target_format` must be one of .*'prob'"),
    "kl_direction": (lambda: KLDivergence(direction="backward"), r"`direction` must be one of .*'backward'"),
    "norm": (lambda: CalibrationError(norm="l3"), r"`norm` must be one of \('l1', 'l2', 'max'\), got 'l3'"),
    "average": (lambda: CalibrationError(average="micro"), r"`average` must be one of .*'micro'"),
    "task": (lambda: BrierScore(task="regression"), r"`task` must be one of .*'regression'"),
    "xent_task": (lambda: XentMetrics(task="multiclas"), r"`task` must be one of .*'multiclas'"),
    "calibration_mode": (
        lambda: CalibrationError(task="binary", calibration_mode="negative"),
        r"`calibration_mode` must be one of .*'negative'",
    ),
    "label_smoothing": (lambda: CrossEntropy(label_smoothing=1.5), r"`label_smoothing` must be a float in \[0, 1\]"),
    "ignore_index": (lambda: CrossEntropy(ignore_index=1.5), r"`ignore_index` must be an int or None, got 1.5"),
    "multilabel_without_num_labels": (
        lambda: CalibrationError(task="multilabel"),
        r"`num_labels` must be a positive int for task='multilabel', got None",
    ),
    "multilabel_zero_labels": (
        lambda: XentMetrics(task="multilabel", num_labels=0),
        r"`num_labels` must be a positive int for task='multilabel', got 0",
    ),
}


@pytest.mark.parametrize("case", BAD_ARGUMENTS.values(), ids=BAD_ARGUMENTS)
def test_bad_argument_is_rejected_at_construction(case):
    make, message = case
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize("n_bins", [0, -1, 2.5, True])
@pytest.mark.parametrize("metric_class", [CalibrationError, XentMetrics])
def test_n_bins_below_one_or_not_an_int_is_rejected(metric_class, n_bins):
    with pytest.raises(ValueError, match=rf"`n_bins` must be an integer >= 1, got {n_bins!r}"):
        metric_class(n_bins=n_bins)


def test_multilabel_preds_with_a_different_number_of_labels_are_rejected():
    metric = CalibrationError(task="multilabel", num_labels=3)
    with pytest.raises(ValueError, match=r"`preds` of shape \(4, 2\) has 2 labels, expected num_labels=3"):
        metric.update(torch.zeros(4, 2), torch.zeros(4, 2, dtype=torch.long))
