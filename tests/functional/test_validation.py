"""Bad input: each raises a ValueError or TypeError that names the argument and what was wrong with it."""

from __future__ import annotations

import math

import pytest
import torch

from xent_plugin.functional import (
    binary_cross_entropy,
    brier_score,
    calibration_error,
    cross_entropy,
    entropy,
    kl_divergence,
    perplexity,
    sufficient_stats,
)

NAN, INF = float("nan"), float("inf")


def _logits(rows: int = 4, classes: int = 3) -> torch.Tensor:
    return torch.randn(rows, classes, generator=torch.Generator().manual_seed(0))


def _with(tensor: torch.Tensor, index: tuple[int, ...], value: float) -> torch.Tensor:
    tensor = tensor.clone()
    tensor[index] = value
    return tensor


LABELS = torch.tensor([0, 1, 2, 1])
UNIFORM = torch.full((4, 3), 1 / 3)

# Each call gets otherwise-valid inputs around the `preds` under test.
MULTICLASS_PREDS_CALLS = {
    "cross_entropy": lambda preds, **kw: cross_entropy(preds, LABELS, **kw),
    "perplexity": lambda preds, **kw: perplexity(preds, LABELS, class_dim=1, **kw),
    "entropy": lambda preds, **kw: entropy(preds, **kw),
    "kl_divergence": lambda preds, **kw: kl_divergence(preds, UNIFORM, **kw),
    "brier_score": lambda preds, **kw: brier_score(preds, LABELS, **kw),
    "calibration_error": lambda preds, **kw: calibration_error(preds, LABELS, **kw),
}


@pytest.mark.parametrize("call", MULTICLASS_PREDS_CALLS.values(), ids=MULTICLASS_PREDS_CALLS)
def test_nan_in_preds_is_rejected(call):
    with pytest.raises(ValueError, match=r"`preds` contains NaN"):
        call(_with(_logits(), (1, 2), NAN))


@pytest.mark.parametrize("call", MULTICLASS_PREDS_CALLS.values(), ids=MULTICLASS_PREDS_CALLS)
def test_plus_inf_in_preds_is_rejected(call):
    with pytest.raises(ValueError, match=r"`preds` contains \+inf"):
        call(_with(_logits(), (2, 0), INF))


@pytest.mark.parametrize("call", MULTICLASS_PREDS_CALLS.values(), ids=MULTICLASS_PREDS_CALLS)
def test_a_row_of_all_minus_inf_is_rejected(call):
    preds = _logits()
    preds[3] = -INF
    with pytest.raises(ValueError, match=r"`preds` has a row where every class is -inf"):
        call(preds)


@pytest.mark.parametrize("call", MULTICLASS_PREDS_CALLS.values(), ids=MULTICLASS_PREDS_CALLS)
def test_integer_preds_are_rejected(call):
    with pytest.raises(TypeError, match=r"`preds` must be a floating-point tensor, got dtype torch.int64"):
        call(torch.ones(4, 3, dtype=torch.long))


def test_minus_inf_logits_for_some_classes_are_accepted():
    preds = _with(_with(_logits(), (0, 1), -INF), (1, 0), -INF)
    assert math.isfinite(cross_entropy(preds, torch.tensor([0, 1, 2, 1])).item())


def test_binary_nan_in_preds_is_rejected():
    with pytest.raises(ValueError, match=r"`preds` contains NaN or \+inf"):
        binary_cross_entropy(torch.tensor([0.0, NAN]), torch.tensor([0, 1]))


def test_binary_plus_inf_in_preds_is_rejected():
    with pytest.raises(ValueError, match=r"`preds` contains NaN or \+inf"):
        brier_score(torch.tensor([INF, 0.0]), torch.tensor([0, 1]), task="binary")


def test_binary_integer_preds_are_rejected():
    with pytest.raises(TypeError, match=r"`preds` must be a floating-point tensor, got dtype torch.int64"):
        binary_cross_entropy(torch.tensor([0, 1]), torch.tensor([0, 1]))


def test_nan_in_soft_target_is_rejected():
    with pytest.raises(ValueError, match=r"`target` contains NaN"):
        cross_entropy(_logits(), _with(UNIFORM, (0, 0), NAN))


def test_mismatched_class_index_shape_names_both_shapes():
    with pytest.raises(ValueError, match=r"`target` of shape \(5,\) does not match `preds` of shape \(4, 3\)"):
        cross_entropy(_logits(), torch.tensor([0, 1, 2, 1, 0]))


def test_mismatched_soft_target_shape_names_both_shapes():
    with pytest.raises(ValueError, match=r"`target` of shape \(4, 2\) does not match `preds` of shape \(4, 3\)"):
        cross_entropy(_logits(), torch.full((4, 2), 0.5))


def test_mismatched_kl_target_shape_names_both_shapes():
    with pytest.raises(
        ValueError, match=r"`target` of shape \(4, 2\) must be a distribution shaped like `preds` \(4, 3\)"
    ):
        kl_divergence(_logits(), torch.full((4, 2), 0.5))


def test_mismatched_binary_target_shape_names_both_shapes():
    with pytest.raises(ValueError, match=r"`target` of shape \(5,\) must match `preds` of shape \(4,\)"):
        binary_cross_entropy(torch.zeros(4), torch.zeros(5, dtype=torch.long))


def test_mismatched_reference_shape_is_rejected():
    with pytest.raises(ValueError, match=r"`reference` of shape \(4, 2\) does not match `preds` of shape \(4, 3\)"):
        sufficient_stats(_logits(), LABELS, torch.full((4, 2), 0.5))


def test_preds_without_a_class_dimension_are_rejected():
    with pytest.raises(ValueError, match=r"`preds` must have a class dimension.*got \(4,\)"):
        cross_entropy(torch.zeros(4), LABELS)


def test_class_dim_out_of_range_is_rejected():
    with pytest.raises(ValueError, match=r"`class_dim`=2 is out of range for `preds` of shape \(4, 3\)"):
        cross_entropy(_logits(), LABELS, class_dim=2)


@pytest.mark.parametrize("bad", [3, -1])
def test_class_index_out_of_range_names_the_index_and_the_range(bad):
    with pytest.raises(ValueError, match=rf"`target` holds class index {bad}, outside \[0, 2\] for 3 classes"):
        cross_entropy(_logits(), torch.tensor([0, bad, 1, 2]))


def test_class_index_out_of_range_other_than_ignore_index_is_rejected():
    with pytest.raises(ValueError, match=r"class index 7, .* other than ignore_index=-100"):
        cross_entropy(_logits(), torch.tensor([0, -100, 7, 2]), ignore_index=-100)


@pytest.mark.parametrize("ignore_index", [-100, 99])
def test_ignore_index_outside_the_class_range_is_exempt(ignore_index):
    value = cross_entropy(_logits(), torch.tensor([0, ignore_index, 2, 1]), ignore_index=ignore_index)
    assert math.isfinite(value.item())


def test_float_class_indices_are_rejected():
    with pytest.raises(
        TypeError, match=r"`target` as class indices must be an integer tensor, got dtype torch.float32"
    ):
        cross_entropy(_logits(), LABELS.float())


def test_int32_class_indices_give_the_int64_value():
    assert cross_entropy(_logits(), LABELS.int()).item() == cross_entropy(_logits(), LABELS).item()


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int8, torch.int16])
def test_small_integer_class_indices_give_the_int64_value(dtype):
    assert cross_entropy(_logits(), LABELS.to(dtype)).item() == cross_entropy(_logits(), LABELS).item()


def test_boolean_class_indices_are_rejected():
    with pytest.raises(TypeError, match=r"`target` as class indices must be an integer tensor, got dtype torch.bool"):
        cross_entropy(_logits(), LABELS.bool())


def test_probability_preds_outside_zero_one_name_the_range():
    with pytest.raises(ValueError, match=r"`preds` must hold probabilities in \[0, 1\].*-0.2"):
        cross_entropy(torch.tensor([[1.2, -0.2], [0.5, 0.5]]), torch.tensor([0, 1]), input_format="probs")


def test_probability_row_of_zeros_is_reported_as_not_summing_to_one():
    with pytest.raises(ValueError, match=r"`preds` rows must sum to 1"):
        cross_entropy(torch.tensor([[0.0, 0.0], [0.5, 0.5]]), torch.tensor([0, 1]), input_format="probs")


def test_probability_rows_not_summing_to_one_name_the_sum():
    with pytest.raises(ValueError, match=r"`preds` rows must sum to 1 \(tolerance 0.0001\).*summing to 1.1"):
        cross_entropy(torch.tensor([[0.5, 0.6], [0.5, 0.5]]), torch.tensor([0, 1]), input_format="probs")


def test_soft_target_rows_not_summing_to_one_name_the_sum():
    with pytest.raises(ValueError, match=r"`target` rows must sum to 1 .*summing to 0.9"):
        cross_entropy(torch.zeros(2, 2), torch.tensor([[0.5, 0.5], [0.3, 0.6]]))


def test_probability_rows_within_the_tolerance_are_accepted():
    preds = torch.tensor([[0.5, 0.50005], [0.5, 0.5]])
    assert math.isfinite(cross_entropy(preds, torch.tensor([0, 1]), input_format="probs").item())


def test_kl_probability_target_outside_zero_one_names_the_values():
    with pytest.raises(
        ValueError, match=r"`target` must hold probabilities in \[0, 1\], found values in \[-0.2, 1.2\]"
    ):
        kl_divergence(torch.zeros(1, 2), torch.tensor([[1.2, -0.2]]))


def test_binary_probabilities_outside_zero_one_name_the_values():
    with pytest.raises(ValueError, match=r"`preds` must hold probabilities in \[0, 1\], found values in \[0, 1.5\]"):
        binary_cross_entropy(torch.tensor([0.0, 1.5]), torch.tensor([0, 1]), input_format="probs")


def test_binary_labels_outside_zero_one_name_the_values():
    with pytest.raises(ValueError, match=r"`target` must hold labels in \[0, 1\].*found values in \[0, 2\]"):
        binary_cross_entropy(torch.zeros(3), torch.tensor([0, 1, 2]))


def test_reverse_kl_names_preds_for_nan_in_preds():
    with pytest.raises(ValueError, match=r"`preds` contains NaN"):
        kl_divergence(_with(_logits(), (0, 0), NAN), UNIFORM, direction="reverse")


def test_plus_inf_in_kl_target_logits_is_named_as_plus_inf():
    with pytest.raises(ValueError, match=r"`target` contains \+inf"):
        kl_divergence(_logits(), _with(_logits(), (0, 0), INF), target_format="logits")


@pytest.mark.parametrize("n_bins", [0, -1, 2.5, True])
def test_n_bins_below_one_or_not_an_int_is_rejected(n_bins):
    with pytest.raises(ValueError, match=rf"`n_bins` must be an integer >= 1, got {n_bins!r}"):
        calibration_error(_logits(), LABELS, n_bins=n_bins)


@pytest.mark.parametrize("n_bins", [0, 2.5])
def test_n_bins_of_the_softmax_pass_is_checked(n_bins):
    with pytest.raises(ValueError, match=rf"`n_bins` must be an integer >= 1, got {n_bins!r}"):
        sufficient_stats(_logits(), LABELS, n_bins=n_bins)


BAD_CHOICES = {
    "input_format": (lambda: cross_entropy(_logits(), LABELS, input_format="softmax"), "input_format", "'softmax'"),
    "binary_input_format": (
        lambda: binary_cross_entropy(torch.zeros(2), torch.zeros(2), input_format="log_probs"),
        "input_format",
        "'log_probs'",
    ),
    "target_format": (lambda: kl_divergence(_logits(), UNIFORM, target_format="prob"), "target_format", "'prob'"),
    "direction": (lambda: kl_divergence(_logits(), UNIFORM, direction="backward"), "direction", "'backward'"),
    "norm": (lambda: calibration_error(_logits(), LABELS, norm="l3"), "norm", "'l3'"),
    "task": (lambda: brier_score(_logits(), LABELS, task="regression"), "task", "'regression'"),
    "calibration_mode": (
        lambda: calibration_error(torch.zeros(2), torch.zeros(2), task="binary", calibration_mode="negative"),
        "calibration_mode",
        "'negative'",
    ),
    "average": (lambda: calibration_error(_logits(), LABELS, average="micro"), "average", "'micro'"),
}


@pytest.mark.parametrize("case", BAD_CHOICES.values(), ids=BAD_CHOICES)
def test_unknown_option_names_the_argument_the_choices_and_the_value(case):
    call, name, given = case
    with pytest.raises(ValueError, match=rf"`{name}` must be one of \(.*\), got {given}"):
        call()


@pytest.mark.parametrize("label_smoothing", [-0.1, 1.5])
def test_label_smoothing_outside_zero_one_is_rejected(label_smoothing):
    with pytest.raises(ValueError, match=rf"`label_smoothing` must be a float in \[0, 1\], got {label_smoothing}"):
        cross_entropy(_logits(), LABELS, label_smoothing=label_smoothing)


@pytest.mark.parametrize("call", MULTICLASS_PREDS_CALLS.values(), ids=MULTICLASS_PREDS_CALLS)
def test_validate_args_false_lets_nan_through(call):
    call(_with(_logits(), (1, 2), NAN), validate_args=False)  # no error


def test_validate_args_false_skips_the_probability_row_check():
    preds = torch.tensor([[0.5, 0.6], [0.5, 0.5]])
    value = cross_entropy(preds, torch.tensor([0, 1]), input_format="probs", validate_args=False)
    assert math.isfinite(value.item())


def test_validate_args_false_lets_binary_nan_through_as_nan():
    value = binary_cross_entropy(torch.tensor([0.0, NAN]), torch.tensor([0, 1]), validate_args=False)
    assert math.isnan(value.item())
