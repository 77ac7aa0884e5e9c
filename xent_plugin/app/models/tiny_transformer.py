"""Tiny causal Transformer language model."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class TinyTransformer(nn.Module):
    """Token and learned position embeddings, causal pre-norm encoder layers, read-out to (B, T, vocab_size).

    Args:
        vocab_size: number of tokens.
        max_len: longest sequence accepted (size of the position table).
        d_model: embedding width.
        num_heads: attention heads; must divide ``d_model``.
        num_layers: encoder layers.
        dim_feedforward: hidden width of each layer's feed-forward block.
        dropout: dropout probability inside the layers.

    Example:
        >>> TinyTransformer(vocab_size=16, max_len=8)(torch.zeros(2, 5, dtype=torch.long)).shape
        torch.Size([2, 5, 16])
    """

    def __init__(
        self,
        vocab_size: int,
        max_len: int = 256,
        d_model: int = 32,
        num_heads: int = 2,
        num_layers: int = 1,
        dim_feedforward: int = 64,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if d_model % num_heads != 0:
            raise ValueError(f"`num_heads` must divide `d_model` ({d_model}), got {num_heads!r}.")
        self.max_len = max_len
        self.token_embedding = nn.Embedding(vocab_size, d_model)
        self.position_embedding = nn.Embedding(max_len, d_model)
        layer = nn.TransformerEncoderLayer(
            d_model, num_heads, dim_feedforward, dropout, batch_first=True, norm_first=True
        )
        # Nested tensors only speed up padding masks, which a causal model does not use; leaving them on makes
        # PyTorch warn that norm_first layers cannot use them.
        self.encoder = nn.TransformerEncoder(layer, num_layers, norm=nn.LayerNorm(d_model), enable_nested_tensor=False)
        self.readout = nn.Linear(d_model, vocab_size)

    def forward(self, tokens: Tensor) -> Tensor:
        length = tokens.shape[1]
        if length > self.max_len:
            raise ValueError(f"sequence length {length} exceeds `max_len` ({self.max_len}).")
        positions = torch.arange(length, device=tokens.device)
        hidden = self.token_embedding(tokens) + self.position_embedding(positions)
        causal_mask = nn.Transformer.generate_square_subsequent_mask(length, device=tokens.device)
        return self.readout(self.encoder(hidden, mask=causal_mask, is_causal=True))
