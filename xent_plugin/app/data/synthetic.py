"""Gaussian-mixture classification whose true label distribution p(y | x) is known exactly."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from xent_plugin.app.data._arguments import check_positive_float, check_unit_interval
from xent_plugin.app.data._base import InMemoryDataModule
from xent_plugin.app.data._random import sample_categorical, seeded_rng
from xent_plugin.app.data.gaussian_mixture import (
    gaussian_mixture_posterior,
    noisy_label_distribution,
    random_class_means,
)
from xent_plugin.functional._validation import check_int


class SyntheticDataModule(InMemoryDataModule):
    r"""Classes drawn uniformly, :math:`x \mid k \sim \mathcal N(\mu_k, I)`, labels drawn from the exact p(y | x).

    Batches carry ``x`` float32 (B, D), ``y`` int64 (B,) and ``probs`` float32 (B, K): the true distribution of
    the observed label, :math:`(1 - \eta)\, p(k \mid x) + \eta / K` (see ``gaussian_mixture``), so a model's
    cross-entropy can be compared with the Bayes-optimal one.

    Args:
        n_samples: rows over all splits.
        num_classes: K, the number of mixture components.
        num_features: D, the input dimension.
        separation: distance of every class mean from the origin (random directions); larger is easier.
        label_noise: :math:`\eta`, the probability that a label is redrawn uniformly over the K classes.
        batch_size: rows per batch.
        seed: fixes the means, the samples, the split and the training shuffle.
        num_workers: DataLoader worker processes.
        val_fraction: share of rows held out for validation.
        test_fraction: share of rows held out for testing.

    Example:
        >>> datamodule = SyntheticDataModule(n_samples=100, num_classes=3, num_features=2, batch_size=5)
        >>> datamodule.setup()
        >>> batch = next(iter(datamodule.test_dataloader()))
        >>> batch["x"].shape, batch["probs"].shape, datamodule.input_dim
        (torch.Size([5, 2]), torch.Size([5, 3]), 2)
    """

    def __init__(
        self,
        n_samples: int = 4000,
        num_classes: int = 4,
        num_features: int = 8,
        separation: float = 2.0,
        label_noise: float = 0.0,
        batch_size: int = 64,
        seed: int = 0,
        num_workers: int = 0,
        val_fraction: float = 0.2,
        test_fraction: float = 0.2,
    ) -> None:
        super().__init__(batch_size, seed, num_workers, val_fraction, test_fraction)
        check_int("n_samples", n_samples, minimum=1)
        check_int("num_classes", num_classes, minimum=2)
        check_int("num_features", num_features, minimum=1)
        check_positive_float("separation", separation)
        check_unit_interval("label_noise", label_noise)
        self.n_samples = n_samples
        self.num_classes = num_classes
        self.label_noise = label_noise
        self.input_shape = (num_features,)
        self.input_dim = num_features
        self.class_means = random_class_means(num_classes, num_features, separation, seeded_rng(seed, "class_means"))

    def posterior(self, x: Tensor) -> Tensor:
        """The clean-label posterior p(k | x) for rows ``x`` (N, D), in float64."""
        return gaussian_mixture_posterior(x.to(torch.float64), self.class_means)

    def label_distribution(self, x: Tensor) -> Tensor:
        """The distribution of the observed (possibly noisy) label given ``x``, in float64: the batches' ``probs``."""
        return noisy_label_distribution(self.posterior(x), self.label_noise)

    def build_columns(self) -> dict[str, Tensor]:
        rng = seeded_rng(self.seed, "samples")
        classes = rng.integers(self.num_classes, size=self.n_samples)
        noise = rng.standard_normal((self.n_samples, self.input_dim))
        # Round to float32 first so `probs` is exact for the inputs the model actually sees.
        x = (self.class_means[classes] + torch.from_numpy(noise)).to(torch.float32)
        probs = self.label_distribution(x)
        y = sample_categorical(probs.numpy(), rng)
        return {"x": x, "y": torch.from_numpy(y.astype(np.int64)), "probs": probs.to(torch.float32)}
