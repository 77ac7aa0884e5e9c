"""Single-layer GRU language model."""

from __future__ import annotations

from torch import Tensor, nn


class TinyGRU(nn.Module):
    """Embedding, one GRU layer, linear read-out: tokens (B, T) to next-token logits (B, T, vocab_size).

    The GRU reads left to right, so trailing padding never changes the logits at real positions.

    Args:
        vocab_size: number of tokens.
        embed_dim: embedding width.
        hidden_dim: GRU state width.

    Example:
        >>> import torch
        >>> TinyGRU(vocab_size=16)(torch.zeros(2, 5, dtype=torch.long)).shape
        torch.Size([2, 5, 16])
    """

    def __init__(self, vocab_size: int, embed_dim: int = 32, hidden_dim: int = 64) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_dim)
        self.gru = nn.GRU(embed_dim, hidden_dim, batch_first=True)
        self.readout = nn.Linear(hidden_dim, vocab_size)

    def forward(self, tokens: Tensor) -> Tensor:
        states, _ = self.gru(self.embedding(tokens))
        return self.readout(states)
