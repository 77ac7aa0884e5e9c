import torch

from xent_plugin.app.data import BreastCancerDataModule


def _ready(**kwargs) -> BreastCancerDataModule:
    datamodule = BreastCancerDataModule(**kwargs)
    datamodule.setup()
    return datamodule


def test_training_split_is_standardized_with_its_own_statistics():
    x = _ready(batch_size=32, seed=0).train_set.columns["x"].double()
    torch.testing.assert_close(x.mean(dim=0), torch.zeros(30, dtype=torch.float64), atol=1e-5, rtol=0)
    torch.testing.assert_close(x.std(dim=0), torch.ones(30, dtype=torch.float64), atol=1e-5, rtol=0)


def test_held_out_splits_reuse_the_training_statistics():
    x = _ready(batch_size=32, seed=0).test_set.columns["x"].double()
    assert x.mean(dim=0).abs().max() > 1e-3


def test_split_sizes_cover_all_569_rows():
    datamodule = _ready(batch_size=32, seed=0)
    sizes = [len(datamodule.train_set), len(datamodule.val_set), len(datamodule.test_set)]
    assert sizes == [341, 114, 114]


def test_batches_have_float_features_and_binary_integer_labels():
    datamodule = _ready(batch_size=16, seed=0)
    batch = next(iter(datamodule.train_dataloader()))
    assert set(batch) == {"x", "y"}
    assert batch["x"].shape == (16, 30) and batch["x"].dtype == torch.float32
    assert batch["y"].dtype == torch.int64 and set(batch["y"].tolist()) <= {0, 1}


def test_model_facing_attributes():
    datamodule = BreastCancerDataModule()
    assert (datamodule.task, datamodule.num_classes, datamodule.input_dim) == ("binary", 2, 30)
