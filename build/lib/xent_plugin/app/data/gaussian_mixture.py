r"""Exact label distributions of an equal-prior Gaussian mixture with identity covariance.

With :math:`x \mid k \sim \mathcal N(\mu_k, I)` and uniform priors, the quadratic term :math:`-|x|^2/2` is shared by
every class, so :math:`p(k \mid x) = \mathrm{softmax}_k(\mu_k \cdot x - |\mu_k|^2 / 2)`. Symmetric label noise
:math:`\eta` replaces the label by a uniform draw with probability :math:`\eta`, so the observed label has
:math:`p_{obs}(y \mid x) = (1 - \eta)\, p(y \mid x) + \eta / K`.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def gaussian_mixture_posterior(x: Tensor, means: Tensor) -> Tensor:
    """p(k | x) for rows ``x`` (N, D) and class means ``means`` (K, D); returns (N, K) in ``x``'s dtype.

    Example:
        >>> gaussian_mixture_posterior(torch.zeros(1, 2), torch.tensor([[1.0, 0.0], [-1.0, 0.0]]))
        tensor([[0.5000, 0.5000]])
    """
    logits = x @ means.T - 0.5 * (means * means).sum(dim=-1)
    return torch.softmax(logits, dim=-1)


def noisy_label_distribution(posterior: Tensor, label_noise: float) -> Tensor:
    """Distribution of the observed label when a share ``label_noise`` of labels is redrawn uniformly.

    Example:
        >>> noisy_label_distribution(torch.tensor([[1.0, 0.0]]), 0.5)
        tensor([[0.7500, 0.2500]])
    """
    num_classes = posterior.shape[-1]
    return (1.0 - label_noise) * posterior + label_noise / num_classes


def random_class_means(num_classes: int, num_features: int, separation: float, rng: np.random.Generator) -> Tensor:
    """Means in random directions, each at distance ``separation`` from the origin; float64 (K, D).

    Example:
        >>> random_class_means(3, 5, 2.0, np.random.default_rng(0)).norm(dim=-1)
        tensor([2., 2., 2.], dtype=torch.float64)
    """
    directions = torch.from_numpy(rng.standard_normal((num_classes, num_features)))
    return separation * directions / directions.norm(dim=-1, keepdim=True)
