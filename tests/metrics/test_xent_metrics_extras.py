"""XentMetrics feeds the opt-in extras from its own pass: the same states as their own updates, no second read."""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from xent_plugin.functional import fused as fused_pass
from xent_plugin.metrics import (
    BootstrapIntervals,
    CalibrationEstimators,
    CalibrationTest,
    CrossEntropy,
    TemperatureScan,
    XentMetrics,
)


def make_extras(**options):
    return [
        CalibrationEstimators(**options),
        BootstrapIntervals(num_replicates=16, **options),
        TemperatureScan(**options),
        CalibrationTest(**options),
    ]


def batches(case: str, generator: torch.Generator) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Two batches of one kind of input, with the options XentMetrics and the extras need for it."""
    made = []
    for rows in (40, 23):
        logits = 2 * torch.randn(rows, 7, generator=generator)
        target = torch.multinomial(logits.softmax(dim=1), 1, generator=generator).squeeze(1)
        if case == "masked classes":
            logits[:, 5:] = float("-inf")
            target = target % 5
        if case == "ignored rows holding NaN":
            target[::3] = -100
            logits[::3] = float("nan")
        if case == "tokens":
            logits = 2 * torch.randn(rows, 3, 7, generator=generator)
            target = torch.multinomial(logits.view(-1, 7).softmax(dim=1), 1, generator=generator).view(rows, 3)
        if case == "bfloat16":
            logits = logits.bfloat16()
        if case == "probs":
            logits = logits.softmax(dim=1)
        made.append((logits, target))
    return made


CASES = {
    "logits": {},
    "masked classes": {},
    "ignored rows holding NaN": {"ignore_index": -100},
    "tokens": {"class_dim": -1},
    "bfloat16": {},
    "probs": {"input_format": "probs"},
}


def states(metric) -> dict[str, torch.Tensor]:
    return {name: getattr(metric, name).clone() for name in metric.sum_state_names}


@pytest.mark.parametrize("case", list(CASES))
def test_extras_fed_from_the_pass_hold_the_states_of_their_own_updates(case):
    options = CASES[case]
    fed, own = make_extras(**options), make_extras(**options)
    metrics = XentMetrics(**options)
    for preds, target in batches(case, torch.Generator().manual_seed(0)):
        metrics.update(preds, target, extras=fed)
        for extra in own:
            extra.update(preds, target)
    assert fed[1].rows_seen == own[1].rows_seen > 0  # the bootstrap's weights are keyed by the same row numbers
    for from_pass, by_itself in zip(fed, own, strict=True):
        for name, expected in states(by_itself).items():
            torch.testing.assert_close(
                states(from_pass)[name], expected, rtol=1e-12, atol=1e-9, msg=f"{type(by_itself).__name__}.{name}"
            )
        for key, value in by_itself.compute().items():
            torch.testing.assert_close(from_pass.compute()[key], value, rtol=1e-9, atol=1e-9, equal_nan=True)


def _recording(function, calls):
    def recorded(*args, **kwargs):
        result = function(*args, **kwargs)
        calls.append(result is not None)
        return result

    return recorded


def test_extras_fed_on_the_fused_pass_match_their_own_updates(monkeypatch):
    generator = torch.Generator().manual_seed(1)
    logits, target = 3 * torch.randn(300, 50, generator=generator), torch.randint(0, 50, (300,), generator=generator)
    row_fed = [CalibrationEstimators(), BootstrapIntervals(num_replicates=16), CalibrationTest()]
    XentMetrics().update(logits, target, extras=row_fed)  # small batches take the eager pass
    fused_extras = [CalibrationEstimators(), BootstrapIntervals(num_replicates=16), CalibrationTest()]
    if fused_pass.MODE == "off":
        pytest.skip("XENT_PLUGIN_FUSED=off")
    calls = []
    with monkeypatch.context() as patch:
        patch.setattr(fused_pass, "MODE", "on")
        patch.setattr(fused_pass, "hard_target_rows", _recording(fused_pass.hard_target_rows, calls))
        XentMetrics().update(logits, target, extras=fused_extras)
    assert calls and all(calls), "the batch did not take the fused pass"
    for eager_extra, fused_extra in zip(row_fed, fused_extras, strict=True):
        for name, expected in states(eager_extra).items():
            torch.testing.assert_close(states(fused_extra)[name], expected, rtol=1e-6, atol=1e-9)


class _LogitReads(TorchDispatchMode):
    """Counts the ops that take a view of one storage (the logits) as an input."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.storage = logits.untyped_storage().data_ptr()
        self.reads = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        for value in (*args, *kwargs.values()):
            if isinstance(value, torch.Tensor) and value.untyped_storage().data_ptr() == self.storage:
                self.reads += 1
                break
        return func(*args, **(kwargs or {}))


def logit_reads(update) -> int:
    logits = torch.randn(512, 20, generator=torch.Generator().manual_seed(2))
    target = torch.randint(0, 20, (512,), generator=torch.Generator().manual_seed(3))
    with _LogitReads(logits) as counter:
        update(logits, target)
    return counter.reads


def test_every_extra_on_reads_the_logits_no_more_often_than_the_default_set():
    default = logit_reads(lambda preds, target: XentMetrics().update(preds, target))
    extras = make_extras()
    with_extras = logit_reads(lambda preds, target: XentMetrics().update(preds, target, extras=extras))
    separately = logit_reads(lambda preds, target: [extra.update(preds, target) for extra in make_extras()])
    assert default > 0
    assert with_extras == default
    assert separately > default  # the counter sees the reads the extras would make on their own


@pytest.mark.filterwarnings("ignore:temperature_scan")
def test_extras_are_counted_as_updated_and_reset_with_their_metric():
    metrics, scan = XentMetrics(), TemperatureScan()
    metrics.update(torch.randn(8, 3), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1]), extras=[scan])
    assert scan.update_count == 1
    assert torch.isclose(scan.compute()["nll"], metrics.compute()["cross_entropy"])
    scan.reset()
    assert scan.count.item() == 0


def test_an_extra_whose_input_options_differ_is_refused_by_name():
    with pytest.raises(ValueError, match=r"CalibrationTest has ignore_index=-100 .* ignore_index=None"):
        XentMetrics().update(torch.randn(4, 3), torch.tensor([0, 1, 2, 0]), extras=[CalibrationTest(ignore_index=-100)])


def test_a_metric_that_cannot_be_fed_from_rows_is_refused_by_name():
    with pytest.raises(TypeError, match="CrossEntropy"):
        XentMetrics().update(torch.randn(4, 3), torch.tensor([0, 1, 2, 0]), extras=[CrossEntropy()])


def test_a_batch_that_fails_its_checks_leaves_the_extras_untouched():
    metrics, extras = XentMetrics(), make_extras()
    with pytest.raises(ValueError, match="target"):
        metrics.update(torch.randn(4, 3), torch.tensor([0, 1, 2, 7]), extras=extras)
    for extra in extras:
        assert all(not state.any() for state in states(extra).values()), type(extra).__name__


def test_hidden_states_feed_the_row_extras_and_refuse_the_temperature_scan():
    generator = torch.Generator().manual_seed(4)
    hidden, head = torch.randn(6, 5, 8, generator=generator), torch.randn(13, 8, generator=generator)
    target = torch.randint(0, 13, (6, 5), generator=generator)
    logits = hidden @ head.T
    fed = [CalibrationEstimators(class_dim=-1), BootstrapIntervals(num_replicates=8, class_dim=-1)]
    own = [CalibrationEstimators(class_dim=-1), BootstrapIntervals(num_replicates=8, class_dim=-1)]
    XentMetrics(class_dim=-1).update_from_hidden(hidden, head, target, max_logits=16, extras=fed)
    for extra in own:
        extra.update(logits, target)
    for from_hidden, by_itself in zip(fed, own, strict=True):
        for name, expected in states(by_itself).items():
            torch.testing.assert_close(states(from_hidden)[name], expected, rtol=1e-6, atol=1e-9)
    with pytest.raises(ValueError, match="TemperatureScan"):
        XentMetrics(class_dim=-1).update_from_hidden(hidden, head, target, extras=[TemperatureScan(class_dim=-1)])
