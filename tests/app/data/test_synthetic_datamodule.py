import math

import numpy as np
import torch
from scipy.stats import multivariate_normal

from xent_plugin.app.data import SyntheticDataModule


def _ready(**kwargs) -> SyntheticDataModule:
    datamodule = SyntheticDataModule(**kwargs)
    datamodule.setup()
    return datamodule


def _scipy_posterior(x: np.ndarray, means: np.ndarray) -> np.ndarray:
    """Bayes' rule with equal priors from scipy's Gaussian densities."""
    log_densities = np.stack([multivariate_normal(mean, np.eye(len(mean))).logpdf(x) for mean in means], axis=1)
    densities = np.exp(log_densities - log_densities.max(axis=1, keepdims=True))
    return densities / densities.sum(axis=1, keepdims=True)


def test_posterior_equals_bayes_rule_on_scipy_densities():
    datamodule = SyntheticDataModule(num_classes=5, num_features=3, separation=3.0, seed=2)
    x = torch.randn(50, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 3
    expected = _scipy_posterior(x.numpy(), datamodule.class_means.numpy())
    np.testing.assert_allclose(datamodule.posterior(x).numpy(), expected, rtol=1e-9, atol=1e-12)


def test_batch_probs_are_the_posterior_of_the_batch_inputs():
    datamodule = _ready(n_samples=200, batch_size=40, seed=1)
    batch = next(iter(datamodule.train_dataloader()))
    expected = _scipy_posterior(batch["x"].double().numpy(), datamodule.class_means.numpy())
    np.testing.assert_allclose(batch["probs"].numpy(), expected, atol=1e-6)


def test_probs_rows_sum_to_one():
    probs = _ready(n_samples=500, batch_size=50, label_noise=0.2).train_set.columns["probs"]
    torch.testing.assert_close(probs.sum(dim=-1), torch.ones(len(probs)))


def test_label_noise_mixes_the_posterior_with_the_uniform_distribution():
    clean = _ready(n_samples=300, num_classes=4, batch_size=10, seed=3)
    noisy = _ready(n_samples=300, num_classes=4, batch_size=10, seed=3, label_noise=0.3)
    torch.testing.assert_close(noisy.train_set.columns["x"], clean.train_set.columns["x"])
    expected = 0.7 * clean.train_set.columns["probs"] + 0.3 / 4
    torch.testing.assert_close(noisy.train_set.columns["probs"], expected)


def test_labels_are_drawn_from_probs():
    columns = _ready(n_samples=4000, label_noise=0.2, batch_size=10, seed=4).train_set.columns
    frequencies = torch.bincount(columns["y"], minlength=4).double() / len(columns["y"])
    torch.testing.assert_close(frequencies, columns["probs"].double().mean(dim=0), atol=0.03, rtol=0)
    # Mean log-loss of labels drawn from p equals the mean entropy of p, up to sampling error.
    log_loss = -columns["probs"].double().gather(1, columns["y"][:, None]).log().mean()
    entropy = torch.special.entr(columns["probs"].double()).sum(dim=1).mean()
    assert math.isclose(log_loss, entropy, abs_tol=0.05)


def test_splits_do_not_share_rows():
    datamodule = _ready(n_samples=1000, batch_size=10)
    rows = [
        tuple(row)
        for split in (datamodule.train_set, datamodule.val_set, datamodule.test_set)
        for row in split.columns["x"].tolist()
    ]
    assert len(set(rows)) == 1000


def test_same_seed_gives_the_same_data_and_means():
    first, second = _ready(n_samples=100, batch_size=10, seed=9), _ready(n_samples=100, batch_size=10, seed=9)
    torch.testing.assert_close(first.class_means, second.class_means)
    torch.testing.assert_close(first.val_set.columns["probs"], second.val_set.columns["probs"])
    torch.testing.assert_close(first.val_set.columns["y"], second.val_set.columns["y"])


def test_class_means_lie_at_the_separation_distance():
    means = SyntheticDataModule(num_classes=6, num_features=4, separation=2.5).class_means
    torch.testing.assert_close(means.norm(dim=1), torch.full((6,), 2.5, dtype=torch.float64))


def test_batches_have_the_documented_keys_dtypes_and_shapes():
    datamodule = _ready(n_samples=100, num_classes=3, num_features=5, batch_size=10)
    batch = next(iter(datamodule.test_dataloader()))
    assert set(batch) == {"x", "y", "probs"}
    assert batch["x"].shape == (10, 5) and batch["x"].dtype == torch.float32
    assert batch["y"].shape == (10,) and batch["y"].dtype == torch.int64
    assert batch["probs"].shape == (10, 3) and batch["probs"].dtype == torch.float32
    assert (datamodule.task, datamodule.num_classes, datamodule.input_shape, datamodule.input_dim) == (
        "multiclass",
        3,
        (5,),
        5,
    )
