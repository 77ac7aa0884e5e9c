"""The contract every metric keeps: fixed-size float64 sum states, streaming equals one-shot, safe empty compute."""

from __future__ import annotations

import pytest
import torch

from ._metric_cases import CASES, CASES_BY_NAME, assert_values_close, in_float64, is_nan_everywhere

ROWS = 128
# Uneven update sizes that add up to ROWS, from a single row to a third of the data.
UPDATE_SIZES = [1, 2, 3, 5, 8, 13, 21, 34, 41]


def _split(tensor: torch.Tensor) -> list[torch.Tensor]:
    return list(tensor.split(UPDATE_SIZES))


@pytest.mark.parametrize("case", CASES, ids=str)
def test_many_small_updates_equal_one_big_update(case):
    preds, target = case.make_batch(ROWS, 0)
    one_shot = case.make_metric()
    one_shot.update(preds, target)
    streamed = case.make_metric()
    for preds_part, target_part in zip(_split(preds), _split(target), strict=True):
        streamed.update(preds_part, target_part)
    assert_values_close(streamed.compute(), one_shot.compute(), rtol=1e-10)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_many_small_float64_updates_equal_one_big_update(case):
    preds, target = in_float64(case.make_batch(ROWS, 0))
    one_shot = case.make_metric()
    one_shot.update(preds, target)
    streamed = case.make_metric()
    for preds_part, target_part in zip(_split(preds), _split(target), strict=True):
        streamed.update(preds_part, target_part)
    assert_values_close(streamed.compute(), one_shot.compute(), rtol=1e-12)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_forward_returns_the_batch_value_and_accumulates(case):
    preds, target = case.make_batch(ROWS, 1)
    forwarded, updated = case.make_metric(), case.make_metric()
    for preds_part, target_part in zip(preds.split(40), target.split(40), strict=True):
        batch_only = case.make_metric()
        batch_only.update(preds_part, target_part)
        assert_values_close(forwarded(preds_part, target_part), batch_only.compute(), rtol=1e-12)
        updated.update(preds_part, target_part)
    assert_values_close(forwarded.compute(), updated.compute(), rtol=1e-12)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_every_state_is_a_float64_tensor_summed_across_processes(case):
    metric = case.make_metric()
    assert metric.sum_state_names, "a metric without states"
    for name, default in {name: metric._defaults[name] for name in metric.sum_state_names}.items():
        assert isinstance(default, torch.Tensor), f"{name} is a list state"
        assert default.dtype == torch.float64, name
        assert metric._reductions[name].__name__ == "dim_zero_sum", name


# One configuration of each class; the multilabel ones hold a histogram per label.
_ONE_CASE_PER_CLASS = [
    CASES_BY_NAME[name]
    for name in [
        "cross_entropy",
        "perplexity",
        "binary_cross_entropy_multilabel",
        "kl_divergence",
        "entropy",
        "brier_score",
        "calibration_error_multilabel_max",
        "xent_metrics_soft",
    ]
]


@pytest.mark.parametrize("case", _ONE_CASE_PER_CLASS, ids=str)
def test_state_has_the_same_size_after_ten_samples_as_after_a_hundred_thousand(case):
    """XentMetrics, which holds every state, is checked at a million samples in test_xent_metrics."""

    def state_numel(samples: int) -> int:
        metric = case.make_metric(validate_args=False)
        # The token case has 4 positions per row.
        metric.update(*case.make_batch(samples // 4 if case.name == "perplexity" else samples, 2))
        return sum(getattr(metric, name).numel() for name in metric.sum_state_names)

    assert state_numel(10**5) == state_numel(10)


@pytest.mark.filterwarnings("ignore:The ``compute`` method of metric")  # torchmetrics' own, on top of ours
@pytest.mark.parametrize("case", CASES, ids=str)
def test_compute_before_any_update_returns_nan_with_a_warning(case):
    metric = case.make_metric()
    with pytest.warns(UserWarning, match="no samples were counted"):
        value = metric.compute()
    assert is_nan_everywhere(value)


@pytest.mark.filterwarnings("ignore:The ``compute`` method of metric")
@pytest.mark.parametrize("case", CASES, ids=str)
def test_reset_returns_to_the_empty_state(case):
    preds, target = case.make_batch(ROWS, 3)
    metric = case.make_metric()
    metric.update(preds, target)
    metric.reset()
    with pytest.warns(UserWarning, match="no samples were counted"):
        assert is_nan_everywhere(metric.compute())
    for name, default in {name: metric._defaults[name] for name in metric.sum_state_names}.items():
        assert torch.equal(getattr(metric, name), default), name
    metric.update(preds[:50], target[:50])
    fresh = case.make_metric()
    fresh.update(preds[:50], target[:50])
    assert_values_close(metric.compute(), fresh.compute(), rtol=0)


def _with_nan(preds: torch.Tensor) -> torch.Tensor:
    """NaN in the second row (position 1 of a token batch): counted in every case, where row 0 may be ignored."""
    preds = preds.clone()
    preds.view(-1)[preds.shape[-1] if preds.ndim > 1 else 1] = float("nan")
    return preds


@pytest.mark.parametrize("case", CASES, ids=str)
def test_nan_preds_are_rejected_when_validating(case):
    preds, target = case.make_batch(16, 4)
    with pytest.raises(ValueError, match="NaN"):
        case.make_metric().update(_with_nan(preds), target)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_validate_args_false_skips_the_checks(case):
    preds, target = case.make_batch(16, 4)
    metric = case.make_metric(validate_args=False)
    metric.update(_with_nan(preds), target)  # no error
