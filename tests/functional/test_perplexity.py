"""perplexity: exp of the mean token cross-entropy, in the token layout (B, T, V) by default."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from xent_plugin.functional import perplexity


def _tokens(seed: int, batch: int = 4, steps: int = 9, vocab: int = 13) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, steps, vocab, generator=g), torch.randint(0, vocab, (batch, steps), generator=g)


def test_token_layout_matches_exp_of_torch_cross_entropy():
    logits, tokens = _tokens(0)
    expected = F.cross_entropy(logits.double().reshape(-1, 13), tokens.reshape(-1)).exp()
    assert perplexity(logits, tokens).item() == pytest.approx(expected.item(), rel=1e-6)


def test_padding_tokens_are_ignored_as_in_torch():
    logits, tokens = _tokens(1)
    tokens[0, 5:] = -100
    tokens[2, 1:] = -100
    expected = F.cross_entropy(logits.double().reshape(-1, 13), tokens.reshape(-1), ignore_index=-100).exp()
    assert perplexity(logits, tokens, ignore_index=-100).item() == pytest.approx(expected.item(), rel=1e-6)


def test_uniform_prediction_has_perplexity_equal_to_the_vocabulary_size():
    tokens = torch.randint(0, 50, (2, 7), generator=torch.Generator().manual_seed(2))
    assert perplexity(torch.zeros(2, 7, 50), tokens).item() == pytest.approx(50.0, rel=1e-6)


def test_log_probability_input_matches_logits():
    logits, tokens = _tokens(3)
    log_probs = logits.log_softmax(dim=-1)
    expected = math.exp(F.nll_loss(log_probs.double().reshape(-1, 13), tokens.reshape(-1)).item())
    assert perplexity(log_probs, tokens, input_format="log_probs").item() == pytest.approx(expected, rel=1e-6)
