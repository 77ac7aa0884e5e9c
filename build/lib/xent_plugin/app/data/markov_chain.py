r"""A random first-order Markov chain over a vocabulary, with its exact stationary law and entropy rate.

For transition matrix :math:`P` (rows :math:`P_i = p(\cdot \mid i)`) and stationary distribution :math:`\pi`
(:math:`\pi P = \pi`), the entropy rate :math:`\sum_i \pi_i H(P_i)` is the lowest per-token cross-entropy any
next-token model can reach on a stationary chain.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from xent_plugin.app.data._random import sample_categorical


def random_transition_matrix(vocab_size: int, concentration: float, rng: np.random.Generator) -> Tensor:
    """Rows drawn from a symmetric Dirichlet(``concentration``); small values give peaked, predictable rows.

    Example:
        >>> random_transition_matrix(3, 0.5, np.random.default_rng(0)).sum(dim=-1)
        tensor([1., 1., 1.], dtype=torch.float64)
    """
    return torch.from_numpy(rng.dirichlet(np.full(vocab_size, concentration), size=vocab_size))


def stationary_distribution(transition_matrix: Tensor) -> Tensor:
    r"""The :math:`\pi` with :math:`\pi P = \pi` and :math:`\sum_i \pi_i = 1`, for an irreducible chain.

    Example:
        >>> stationary_distribution(torch.tensor([[0.5, 0.5], [0.25, 0.75]], dtype=torch.float64))
        tensor([0.3333, 0.6667], dtype=torch.float64)
    """
    vocab_size = transition_matrix.shape[0]
    # (P^T - I) pi = 0 has rank V - 1; swapping one equation for sum(pi) = 1 makes the solution unique.
    system = transition_matrix.T - torch.eye(vocab_size, dtype=transition_matrix.dtype)
    system[-1] = 1.0
    rhs = torch.zeros(vocab_size, dtype=transition_matrix.dtype)
    rhs[-1] = 1.0
    return torch.linalg.solve(system, rhs)


def entropy_rate(transition_matrix: Tensor, stationary: Tensor) -> float:
    r""":math:`\sum_i \pi_i H(P_i)` in nats, with :math:`0 \log 0 = 0`.

    Example:
        >>> entropy_rate(torch.full((2, 2), 0.5, dtype=torch.float64), torch.tensor([0.5, 0.5]))
        0.6931...
    """
    row_entropies = torch.special.entr(transition_matrix).sum(dim=-1)
    return float((stationary.to(row_entropies.dtype) * row_entropies).sum())


def sample_chains(
    transition_matrix: Tensor, initial: Tensor, n_chains: int, n_steps: int, rng: np.random.Generator
) -> Tensor:
    """``n_chains`` runs of ``n_steps`` states each, the first drawn from ``initial``; int64 (n_chains, n_steps).

    Example:
        >>> chains = sample_chains(torch.tensor([[0.0, 1.0], [1.0, 0.0]]), torch.tensor([1.0, 0.0]), 1, 4,
        ...                        np.random.default_rng(0))
        >>> chains
        tensor([[0, 1, 0, 1]])
    """
    rows = transition_matrix.numpy()
    states = np.empty((n_chains, n_steps), dtype=np.int64)
    states[:, 0] = sample_categorical(np.broadcast_to(initial.numpy(), (n_chains, len(initial))), rng)
    for step in range(1, n_steps):
        states[:, step] = sample_categorical(rows[states[:, step - 1]], rng)
    return torch.from_numpy(states)
