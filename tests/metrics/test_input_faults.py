"""Inputs an adversarial pass found mishandled (issue 13): mixed dtypes, empty batches, NaN or all -inf rows
that ``ignore_index`` marks, and arguments of the wrong type. Each is checked against ``torch.nn.functional``."""

from __future__ import annotations

import itertools
import warnings

import pytest
import torch
import torch.nn.functional as F

from xent_plugin.functional import (
    binary_cross_entropy,
    bootstrap_intervals,
    brier_score,
    calibration_error,
    classwise_calibration_error,
    cross_entropy,
    entropy,
    kl_divergence,
    sufficient_stats,
    temperature_scan,
)
from xent_plugin.functional.confidence_histogram import confidence_histogram
from xent_plugin.functional.softmax_stats import row_statistics
from xent_plugin.metrics import (
    BinaryCrossEntropy,
    BootstrapIntervals,
    BrierScore,
    CalibrationError,
    ClasswiseCalibrationError,
    CrossEntropy,
    Entropy,
    KLDivergence,
    Perplexity,
    TemperatureScan,
    XentMetrics,
)

FLOATS = (torch.float64, torch.float32, torch.bfloat16, torch.float16)
DTYPE_PAIRS = [pair for pair in itertools.product(FLOATS, FLOATS) if pair[0] != pair[1]]


def _batch(rows: int = 32, classes: int = 6, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    logits = 2 * torch.randn(rows, classes, generator=g, dtype=torch.float64)
    soft = torch.randn(rows, classes, generator=g, dtype=torch.float64).softmax(dim=1)
    return logits, soft, torch.randint(0, classes, (rows,), generator=g)


def _tolerance(*dtypes: torch.dtype) -> float:
    return 2e-2 if any(torch.finfo(d).bits == 16 for d in dtypes) else 1e-5


@pytest.mark.parametrize(("preds_dtype", "target_dtype"), DTYPE_PAIRS, ids=str)
def test_mixed_dtypes_compute_like_the_wider_float(preds_dtype, target_dtype):
    logits, soft, labels = _batch()
    preds, target = logits.to(preds_dtype), soft.to(target_dtype)
    # The reference: both sides rounded to their dtypes, then computed in float64.
    p64, t64 = preds.double(), target.double()
    t64 = t64 / t64.sum(dim=1, keepdim=True)
    tol = _tolerance(preds_dtype, target_dtype)
    expected_ce = F.cross_entropy(p64, t64)
    expected_kl = F.kl_div(p64.log_softmax(dim=1), t64, reduction="batchmean")
    expected_brier = (p64.softmax(dim=1) - t64).square().sum(dim=1).mean()

    torch.testing.assert_close(cross_entropy(preds, target).item(), expected_ce.item(), rtol=tol, atol=tol)
    torch.testing.assert_close(kl_divergence(preds, target).item(), expected_kl.item(), rtol=tol, atol=tol)
    for metric, expected in (
        (CrossEntropy(), expected_ce),
        (KLDivergence(), expected_kl),
        (BrierScore(), expected_brier),
    ):
        metric.update(preds, target)
        torch.testing.assert_close(metric.compute().item(), expected.item(), rtol=tol, atol=tol)
    both = XentMetrics()
    both.update(preds, labels, reference=target)
    values = both.compute()
    torch.testing.assert_close(values["kl"].item(), expected_kl.item(), rtol=tol, atol=tol)
    # Reverse KL takes the reference as the model side: its dtype is mixed the other way round.
    reverse = kl_divergence(preds.log_softmax(dim=1), target, input_format="log_probs", direction="reverse")
    expected_reverse = F.kl_div(t64.log(), p64.log_softmax(dim=1), reduction="batchmean", log_target=True)
    torch.testing.assert_close(reverse.item(), expected_reverse.item(), rtol=10 * tol, atol=10 * tol)


@pytest.mark.parametrize(("preds_dtype", "target_dtype"), DTYPE_PAIRS, ids=str)
def test_mixed_dtypes_in_estimators_that_read_whole_rows(preds_dtype, target_dtype):
    logits, soft, _ = _batch()
    preds, target = logits.to(preds_dtype), soft.to(target_dtype)
    tol = _tolerance(preds_dtype, target_dtype)
    # The target keeps its dtype: rounded to bfloat16 its rows sum to 1 only within that dtype's tolerance.
    same = classwise_calibration_error(preds.double(), target)
    torch.testing.assert_close(classwise_calibration_error(preds, target), same, rtol=tol, atol=tol)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the best temperature of random logits may be at the grid's end
        scan = temperature_scan(preds, target)["nll"]
    torch.testing.assert_close(scan, cross_entropy(preds, target), rtol=tol, atol=tol)
    assert entropy(preds).dtype == torch.float64


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
def test_computation_is_in_the_wider_float_and_at_least_float32(dtype):
    logits, soft, _ = _batch(rows=4)
    # float64 soft target beside `dtype` logits: the terms are float64 whatever the logits' dtype.
    rows = next(row_statistics(logits.to(dtype), soft))
    assert rows.cross_entropy.dtype == torch.float64
    rows = next(row_statistics(logits.to(dtype), soft.to(dtype)))
    assert rows.cross_entropy.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)


EMPTY_MULTICLASS = {
    "cross_entropy": lambda p, t, fmt: cross_entropy(p, t, input_format=fmt),
    "cross_entropy_soft": lambda p, t, fmt: cross_entropy(p, p.new_zeros(p.shape), input_format=fmt),
    "kl_divergence": lambda p, t, fmt: kl_divergence(p, p.new_zeros(p.shape), input_format=fmt),
    "brier_score": lambda p, t, fmt: brier_score(p, t, input_format=fmt),
    "calibration_error": lambda p, t, fmt: calibration_error(p, t, input_format=fmt),
    "classwise": lambda p, t, fmt: classwise_calibration_error(p, t, input_format=fmt),
    "temperature_scan": lambda p, t, fmt: temperature_scan(p, t, input_format=fmt)["nll"],
    "bootstrap": lambda p, t, fmt: bootstrap_intervals(p, t, input_format=fmt)["cross_entropy"],
    "entropy": lambda p, t, fmt: entropy(p, input_format=fmt),
}


@pytest.mark.parametrize("input_format", ["logits", "probs", "log_probs"])
@pytest.mark.parametrize("name", EMPTY_MULTICLASS)
def test_an_empty_batch_counts_nothing_in_every_format(name, input_format):
    with pytest.warns(UserWarning, match="no samples were counted"):
        value = EMPTY_MULTICLASS[name](torch.empty(0, 4), torch.empty(0, dtype=torch.long), input_format)
    assert value.isnan().all()


@pytest.mark.parametrize("input_format", ["logits", "probs"])
@pytest.mark.parametrize("shape", [(0,), (0, 3)], ids=["binary", "multilabel"])
def test_an_empty_binary_batch_counts_nothing(input_format, shape):
    with pytest.warns(UserWarning, match="no samples were counted"):
        assert binary_cross_entropy(torch.empty(shape), torch.empty(shape), input_format=input_format).isnan()


@pytest.mark.parametrize("input_format", ["logits", "probs", "log_probs"])
def test_an_empty_update_leaves_the_state_unchanged(input_format):
    logits, _, labels = _batch()
    preds = {"logits": logits, "probs": logits.softmax(1), "log_probs": logits.log_softmax(1)}[input_format]
    metric, reference = XentMetrics(input_format=input_format), XentMetrics(input_format=input_format)
    metric.update(preds, labels)
    metric.update(preds[:0], labels[:0])
    reference.update(preds, labels)
    for name, value in metric.compute().items():
        torch.testing.assert_close(value, reference.compute()[name], rtol=0, atol=0)


def _poisoned_batch(input_format: str):
    """Rows 0 and 1 hold NaN and all -inf (a row of zeros as probabilities) and are ignored; F's reference."""
    logits, _, labels = _batch()
    labels[:2] = -100
    expected = F.cross_entropy(logits[2:], labels[2:])
    poisoned = logits.clone()
    poisoned[0], poisoned[1] = float("nan"), float("-inf")
    if input_format == "probs":
        poisoned = poisoned.softmax(dim=1)
        poisoned[1] = 0.0
    elif input_format == "log_probs":
        poisoned = poisoned.log_softmax(dim=1)
    return poisoned, labels, expected, logits


@pytest.mark.parametrize("validate_args", [True, False])
@pytest.mark.parametrize("input_format", ["logits", "probs", "log_probs"])
def test_ignored_rows_holding_nan_or_minus_inf_are_ignored_as_f_cross_entropy_does(input_format, validate_args):
    poisoned, labels, expected, logits = _poisoned_batch(input_format)
    clean = {"logits": logits, "probs": logits.softmax(1), "log_probs": logits.log_softmax(1)}[input_format]
    options = {"input_format": input_format, "ignore_index": -100, "validate_args": validate_args}
    assert F.cross_entropy(logits, labels, ignore_index=-100).isfinite()
    torch.testing.assert_close(cross_entropy(poisoned, labels, **options).item(), expected.item())
    for make in (XentMetrics, CalibrationError, BrierScore, Perplexity, BootstrapIntervals, TemperatureScan):
        kwargs = dict(options, class_dim=1) if make is Perplexity else options
        metric, reference = make(**kwargs), make(**kwargs)
        metric.update(poisoned, labels)
        reference.update(clean[2:], labels[2:])
        got, want = metric.compute(), reference.compute()
        got, want = (got, want) if isinstance(got, dict) else ({"value": got}, {"value": want})
        for name in want:
            assert not got[name].isnan().any(), f"{make.__name__} {name} is NaN"
            if name.endswith(("_lower", "_upper")):
                continue  # bootstrap weights are keyed by row number, and the reference has two rows fewer
            torch.testing.assert_close(got[name], want[name], rtol=1e-6, atol=1e-9)
    classwise = ClasswiseCalibrationError(num_classes=6, **options)
    classwise.update(poisoned, labels)
    assert classwise.compute().isfinite()


def test_a_nan_row_that_is_counted_is_still_rejected():
    poisoned, labels, _, _ = _poisoned_batch("logits")
    labels[0] = 1
    with pytest.raises(ValueError, match="`preds` contains NaN"):
        cross_entropy(poisoned, labels, ignore_index=-100)


@pytest.mark.parametrize("validate_args", [True, False])
def test_ignored_binary_entries_holding_nan_are_ignored(validate_args):
    logits = torch.tensor([float("nan"), 0.3, -1.2, 2.0])
    labels = torch.tensor([-1, 1, 0, 1])
    expected = F.binary_cross_entropy_with_logits(logits[1:], labels[1:].double().float())
    value = binary_cross_entropy(logits, labels, ignore_index=-1, validate_args=validate_args)
    torch.testing.assert_close(value.item(), expected.item())
    ece = calibration_error(logits, labels, task="binary", ignore_index=-1, validate_args=validate_args)
    assert ece.isfinite()
    metric = BinaryCrossEntropy(ignore_index=-1, validate_args=validate_args)
    metric.update(logits, labels)
    torch.testing.assert_close(metric.compute().item(), expected.item())


LOGITS, _, LABELS = _batch(rows=4)

BAD_CALLS = {
    "preds_list": (
        lambda: cross_entropy(LOGITS.tolist(), LABELS),
        TypeError,
        r"`preds` must be a torch.Tensor, got list",
    ),
    "target_list": (
        lambda: cross_entropy(LOGITS, LABELS.tolist()),
        TypeError,
        r"`target` must be a torch.Tensor, got list",
    ),
    "reference_list": (
        lambda: sufficient_stats(LOGITS, LABELS, LOGITS.softmax(1).tolist()),
        TypeError,
        r"`reference` must be a torch.Tensor, got list",
    ),
    "kl_target_list": (lambda: kl_divergence(LOGITS, [[0.5]]), TypeError, r"`target` must be a torch.Tensor"),
    "entropy_list": (lambda: entropy(LOGITS.tolist()), TypeError, r"`preds` must be a torch.Tensor, got list"),
    "binary_list": (
        lambda: binary_cross_entropy([0.1], torch.tensor([1])),
        TypeError,
        r"`preds` must be a torch.Tensor",
    ),
    "classwise_list": (
        lambda: classwise_calibration_error(LOGITS, LABELS.tolist()),
        TypeError,
        r"`target` must be a torch.Tensor",
    ),
    "scan_list": (lambda: temperature_scan(LOGITS.tolist(), LABELS), TypeError, r"`preds` must be a torch.Tensor"),
    "bootstrap_list": (lambda: bootstrap_intervals(LOGITS.tolist(), LABELS), TypeError, r"`preds` must be a torch"),
    "fn_class_dim_str": (
        lambda: cross_entropy(LOGITS, LABELS, class_dim="1"),
        ValueError,
        r"`class_dim` must be an integer, got '1'",
    ),
    "fn_class_dim_float": (
        lambda: entropy(LOGITS, class_dim=1.0),
        ValueError,
        r"`class_dim` must be an integer, got 1.0",
    ),
    "fn_label_smoothing_bool": (
        lambda: cross_entropy(LOGITS, LABELS, label_smoothing=True),
        ValueError,
        r"`label_smoothing` must be a float in \[0, 1\], got True",
    ),
    "fn_validate_args_str": (
        lambda: cross_entropy(LOGITS, LABELS, validate_args="yes"),
        TypeError,
        r"`validate_args` must be True or False, got 'yes'",
    ),
    "fn_n_cells_float": (
        lambda: confidence_histogram(LOGITS, LABELS, n_cells=8.0),
        ValueError,
        r"`n_cells` must be an integer >= 1, got 8.0",
    ),
    "class_dim_str": (lambda: CrossEntropy(class_dim="1"), ValueError, r"`class_dim` must be an integer, got '1'"),
    "class_dim_float": (lambda: CrossEntropy(class_dim=1.0), ValueError, r"`class_dim` must be an integer, got 1.0"),
    "class_dim_bool": (lambda: Entropy(class_dim=True), ValueError, r"`class_dim` must be an integer, got True"),
    "kl_class_dim": (lambda: KLDivergence(class_dim="-1"), ValueError, r"`class_dim` must be an integer"),
    "task_class_dim": (
        lambda: CalibrationError(class_dim=None),
        ValueError,
        r"`class_dim` must be an integer, got None",
    ),
    "label_smoothing_bool": (
        lambda: CrossEntropy(label_smoothing=True),
        ValueError,
        r"`label_smoothing` must be a float in \[0, 1\], got True",
    ),
    "xent_label_smoothing": (lambda: XentMetrics(label_smoothing=2), ValueError, r"`label_smoothing` must be a float"),
    "validate_args_str": (
        lambda: CrossEntropy(validate_args="no"),
        TypeError,
        r"`validate_args` must be True or False",
    ),
    "validate_args_int": (
        lambda: BrierScore(validate_args=0),
        TypeError,
        r"`validate_args` must be True or False, got 0",
    ),
    "bce_validate_args": (lambda: BinaryCrossEntropy(validate_args=None), TypeError, r"`validate_args` must be True"),
    "num_labels_binary": (
        lambda: XentMetrics(task="binary", num_labels=2.0),
        ValueError,
        r"`num_labels` must be an integer",
    ),
    "classwise_num_classes": (
        lambda: ClasswiseCalibrationError(num_classes=3.0),
        ValueError,
        r"`num_classes` must be an integer >= 2",
    ),
    "classwise_debias": (
        lambda: ClasswiseCalibrationError(num_classes=3, debias="yes"),
        TypeError,
        r"`debias` must be True or False",
    ),
    "bootstrap_seed": (lambda: BootstrapIntervals(seed="a"), ValueError, r"`seed` must be an integer, got 'a'"),
    "scan_temperatures_list": (
        lambda: TemperatureScan(temperatures=[0.5, 1.0, 2.0]),
        TypeError,
        r"`temperatures` must be a torch.Tensor, got list",
    ),
    "input_format_not_str": (
        lambda: CrossEntropy(input_format=["logits"]),
        ValueError,
        r"`input_format` must be one of",
    ),
}


@pytest.mark.parametrize("case", BAD_CALLS.values(), ids=BAD_CALLS)
def test_every_public_argument_is_checked_with_a_message_that_names_it(case):
    call, error, message = case
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(error, match=message):
            call()
