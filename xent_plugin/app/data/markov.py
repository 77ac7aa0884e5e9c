"""Next-token prediction on variable-length sequences from a random Markov chain with known transitions."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.data import Dataset

from xent_plugin.app.data._arguments import check_positive_float
from xent_plugin.app.data._base import InMemoryDataModule
from xent_plugin.app.data._random import seeded_rng
from xent_plugin.app.data.markov_chain import (
    entropy_rate,
    random_transition_matrix,
    sample_chains,
    stationary_distribution,
)
from xent_plugin.functional._validation import check_int


class MarkovSequenceDataset(Dataset):
    """Padded token sequences; each item's ``probs`` is looked up in the transition matrix, not stored.

    Storing (N, T, V) probabilities would cost V times the memory of the tokens themselves.

    Example:
        >>> columns = {"x": torch.tensor([[1, 0]]), "y": torch.tensor([[0, -100]])}
        >>> item = MarkovSequenceDataset(columns, torch.tensor([[0.5, 0.5], [0.9, 0.1]]), ignore_index=-100)[0]
        >>> item["probs"]
        tensor([[0.9000, 0.1000],
                [0.5000, 0.5000]])
    """

    def __init__(self, columns: dict[str, Tensor], transition_matrix: Tensor, ignore_index: int) -> None:
        self.x = columns["x"]
        self.y = columns["y"]
        self.transition_matrix = transition_matrix.to(torch.float32)
        self.ignore_index = ignore_index

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        x, y = self.x[index], self.y[index]
        vocab_size = self.transition_matrix.shape[0]
        probs = self.transition_matrix[x]
        probs[y == self.ignore_index] = 1.0 / vocab_size
        return {"x": x, "y": y, "probs": probs}


class MarkovDataModule(InMemoryDataModule):
    r"""Sequences of a stationary Markov chain, for next-token cross-entropy against a known floor.

    Each sequence starts from the stationary distribution and has a length drawn uniformly from
    [``min_len``, ``seq_len``]. Batches carry ``x`` int64 (B, T): input tokens, padded with 0; ``y`` int64
    (B, T): the next tokens, ``ignore_index`` at padded positions; ``probs`` float32 (B, T, V): the true
    next-token distribution, the transition row of ``x[:, t]``, and uniform at padded positions (any valid
    distribution would do: the targets there are ignored).

    Attributes ``transition_matrix`` (V, V), ``stationary_distribution`` (V,) and ``entropy_rate`` (nats per
    token, the best achievable mean cross-entropy) describe the chain exactly.

    Args:
        vocab_size: V, the number of states (tokens).
        seq_len: T, the padded length.
        n_sequences: sequences over all splits.
        concentration: Dirichlet parameter of each transition row; small values give predictable chains.
        min_len: shortest sequence length.
        ignore_index: target value at padded positions; must not be a token.
        batch_size: sequences per batch.
        seed: fixes the chain, the sequences, the split and the training shuffle.
        num_workers: DataLoader worker processes.
        val_fraction: share of sequences held out for validation.
        test_fraction: share of sequences held out for testing.

    Example:
        >>> datamodule = MarkovDataModule(vocab_size=5, seq_len=6, n_sequences=20, min_len=3, batch_size=2)
        >>> datamodule.setup()
        >>> batch = next(iter(datamodule.train_dataloader()))
        >>> batch["x"].shape, batch["probs"].shape, datamodule.transition_matrix.shape
        (torch.Size([2, 6]), torch.Size([2, 6, 5]), torch.Size([5, 5]))
    """

    def __init__(
        self,
        vocab_size: int = 16,
        seq_len: int = 32,
        n_sequences: int = 2000,
        concentration: float = 0.5,
        min_len: int = 8,
        ignore_index: int = -100,
        batch_size: int = 64,
        seed: int = 0,
        num_workers: int = 0,
        val_fraction: float = 0.2,
        test_fraction: float = 0.2,
    ) -> None:
        super().__init__(batch_size, seed, num_workers, val_fraction, test_fraction)
        check_int("vocab_size", vocab_size, minimum=2)
        check_int("seq_len", seq_len, minimum=1)
        check_int("n_sequences", n_sequences, minimum=1)
        check_positive_float("concentration", concentration)
        check_int("min_len", min_len, minimum=1)
        if min_len > seq_len:
            raise ValueError(f"`min_len` must be <= `seq_len` ({seq_len}), got {min_len!r}.")
        if isinstance(ignore_index, bool) or not isinstance(ignore_index, int) or 0 <= ignore_index < vocab_size:
            raise ValueError(
                f"`ignore_index` must be an int outside the tokens [0, {vocab_size}), got {ignore_index!r}."
            )
        self.vocab_size = vocab_size
        self.num_classes = vocab_size
        self.seq_len = seq_len
        self.n_sequences = n_sequences
        self.min_len = min_len
        self.ignore_index = ignore_index
        self.transition_matrix = random_transition_matrix(vocab_size, concentration, seeded_rng(seed, "chain"))
        self.stationary_distribution = stationary_distribution(self.transition_matrix)
        self.entropy_rate = entropy_rate(self.transition_matrix, self.stationary_distribution)

    def build_columns(self) -> dict[str, Tensor]:
        rng = seeded_rng(self.seed, "sequences")
        chains = sample_chains(
            self.transition_matrix, self.stationary_distribution, self.n_sequences, self.seq_len + 1, rng
        )
        lengths = torch.from_numpy(rng.integers(self.min_len, self.seq_len + 1, size=self.n_sequences))
        padded = torch.arange(self.seq_len) >= lengths[:, None]
        return {
            "x": chains[:, :-1].masked_fill(padded, 0),
            "y": chains[:, 1:].masked_fill(padded, self.ignore_index),
        }

    def make_dataset(self, columns: dict[str, Tensor]) -> Dataset:
        return MarkovSequenceDataset(columns, self.transition_matrix, self.ignore_index)
