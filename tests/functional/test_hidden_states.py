"""The hidden-state pass gives the sums of the logits' passes, fused and eager, without holding the logits."""

from __future__ import annotations

import warnings

import pytest
import torch

from xent_plugin.functional import fused
from xent_plugin.functional.calibration_error import _calibration_error_compute
from xent_plugin.functional.hidden_states import hidden_state_stats
from xent_plugin.functional.softmax_stats import SufficientStats, sufficient_stats
from xent_plugin.metrics import XentMetrics

pytestmark = pytest.mark.timeout(900)

TOLERANCE = 1e-6
VOCAB, WIDTH = 300, 16


def _model_outputs(batch=3, steps=40, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(batch, steps, WIDTH, generator=g, dtype=dtype)
    head = torch.randn(VOCAB, WIDTH, generator=g, dtype=dtype) / 2
    bias = torch.randn(VOCAB, generator=g, dtype=dtype)
    tokens = torch.randint(0, VOCAB, (batch, steps), generator=g)
    tokens[:, -5:] = -100
    return hidden, head, bias, tokens


def _values(stats: SufficientStats) -> dict[str, float]:
    per_row = {name: (getattr(stats, name) / stats.count).item() for name in ("cross_entropy", "entropy", "brier")}
    return {
        **per_row,
        "count": stats.count.item(),
        "correct": stats.correct.item(),
        "ece": _calibration_error_compute(stats.bins, "l1").item(),
    }


def _assert_close(actual: dict[str, float], expected: dict[str, float]) -> None:
    assert actual["count"] == expected["count"]
    assert actual["correct"] == expected["correct"]
    for name in ("cross_entropy", "entropy", "brier", "ece"):
        assert actual[name] == pytest.approx(expected[name], rel=TOLERANCE, abs=TOLERANCE), name


@pytest.fixture
def compiled_pass_available(monkeypatch):
    monkeypatch.setattr(fused, "MODE", "auto")
    monkeypatch.setattr(fused, "_failed", False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        yield


@pytest.mark.parametrize("max_logits", [1, 100, 4096, 10**6], ids=lambda m: f"max_logits={m}")
def test_hidden_states_agree_with_the_eager_pass_on_the_logits(max_logits):
    hidden, head, bias, tokens = _model_outputs()
    logits = hidden @ head.T + bias
    options = {"ignore_index": -100, "label_smoothing": 0.1, "n_bins": 15}
    eager = sufficient_stats(logits, tokens, class_dim=-1, fused=False, **options)
    from_hidden = hidden_state_stats(hidden, head, tokens, bias, max_logits=max_logits, **options)
    _assert_close(_values(from_hidden), _values(eager))


def test_hidden_states_fused_and_eager_passes_agree(compiled_pass_available):
    hidden, head, bias, tokens = _model_outputs(seed=1)
    logits = hidden @ head.T + bias
    options = {"ignore_index": -100, "n_bins": 15}
    eager = _values(sufficient_stats(logits, tokens, class_dim=-1, fused=False, **options))
    compiled = _values(sufficient_stats(logits, tokens, class_dim=-1, fused=True, **options))
    from_hidden = _values(hidden_state_stats(hidden, head, tokens, bias, max_logits=512, **options))
    _assert_close(compiled, eager)
    _assert_close(from_hidden, eager)


def test_masked_classes_and_ties_across_vocabulary_blocks():
    hidden, head, _, tokens = _model_outputs(seed=2, dtype=torch.float64)
    bias = torch.zeros(VOCAB, dtype=torch.float64)
    bias[250:] = float("-inf")  # masked classes, the whole last block of some splits
    head[7] = head[200]  # a tie at the maximum across blocks: the first index wins
    tokens[0, 0] = 200
    hidden[0, 0] = head[200] * 10
    logits = hidden @ head.T + bias
    eager = sufficient_stats(logits, tokens, class_dim=-1, ignore_index=-100, n_bins=10, fused=False)
    from_hidden = hidden_state_stats(hidden, head, tokens, bias, ignore_index=-100, n_bins=10, max_logits=64)
    _assert_close(_values(from_hidden), _values(eager))


def test_update_from_hidden_matches_update_on_the_logits():
    hidden, head, bias, tokens = _model_outputs(seed=3)
    direct, from_hidden = XentMetrics(class_dim=-1, ignore_index=-100), XentMetrics(ignore_index=-100)
    direct.update(hidden @ head.T + bias, tokens)
    from_hidden.update_from_hidden(hidden, head, tokens, bias, max_logits=1000)
    for name, value in direct.compute().items():
        assert from_hidden.compute()[name].item() == pytest.approx(value.item(), rel=TOLERANCE, abs=TOLERANCE), name


def test_out_of_range_target_is_named():
    hidden, head, bias, tokens = _model_outputs()
    tokens[1, 2] = VOCAB
    with pytest.raises(ValueError, match=f"class index {VOCAB}"):
        hidden_state_stats(hidden, head, tokens, bias, ignore_index=-100)


def test_head_of_the_wrong_width_is_named():
    hidden, head, _, tokens = _model_outputs()
    with pytest.raises(ValueError, match="`head_weight` of shape"):
        hidden_state_stats(hidden, head[:, :-1], tokens)
