import numpy as np
import torch
from sklearn.datasets import load_digits

from xent_plugin.app.data import DigitsDataModule


def _ready(**kwargs) -> DigitsDataModule:
    datamodule = DigitsDataModule(**kwargs)
    datamodule.setup()
    return datamodule


def _sorted_rows(pixel_counts: np.ndarray, labels: np.ndarray) -> np.ndarray:
    rows = np.concatenate([pixel_counts, labels[:, None]], axis=1)
    return rows[np.lexsort(rows.T[::-1])]


def test_split_sizes_follow_the_fractions():
    datamodule = _ready(batch_size=32, seed=0, val_fraction=0.1, test_fraction=0.3)
    sizes = [len(datamodule.train_set), len(datamodule.val_set), len(datamodule.test_set)]
    assert sizes == [1797 - 180 - 539, 180, 539]


def test_splits_partition_sklearns_digits():
    datamodule = _ready(batch_size=32, seed=0)
    splits = [split.columns for split in (datamodule.train_set, datamodule.val_set, datamodule.test_set)]
    pixel_counts = np.rint(torch.cat([split["x"] for split in splits]).flatten(1).numpy() * 16)
    labels = torch.cat([split["y"] for split in splits]).numpy()
    digits = load_digits()
    np.testing.assert_array_equal(_sorted_rows(pixel_counts, labels), _sorted_rows(digits.data, digits.target))


def test_same_seed_gives_the_same_splits_and_first_batch():
    first, second = _ready(batch_size=16, seed=5), _ready(batch_size=16, seed=5)
    torch.testing.assert_close(first.test_set.columns["x"], second.test_set.columns["x"])
    batch_a, batch_b = next(iter(first.train_dataloader())), next(iter(second.train_dataloader()))
    torch.testing.assert_close(batch_a["y"], batch_b["y"])


def test_different_seeds_give_different_splits():
    first, second = _ready(batch_size=16, seed=0), _ready(batch_size=16, seed=1)
    assert not torch.equal(first.test_set.columns["y"], second.test_set.columns["y"])


def test_batches_are_unit_scaled_images_with_integer_labels():
    datamodule = _ready(batch_size=8, seed=0)
    batch = next(iter(datamodule.val_dataloader()))
    assert set(batch) == {"x", "y"}
    assert batch["x"].shape == (8, *datamodule.input_shape) and batch["x"].dtype == torch.float32
    assert batch["y"].shape == (8,) and batch["y"].dtype == torch.int64
    assert 0.0 <= batch["x"].min() and batch["x"].max() <= 1.0


def test_model_facing_attributes():
    datamodule = DigitsDataModule()
    assert (datamodule.task, datamodule.num_classes, datamodule.input_shape, datamodule.input_dim) == (
        "multiclass",
        10,
        (1, 8, 8),
        64,
    )
