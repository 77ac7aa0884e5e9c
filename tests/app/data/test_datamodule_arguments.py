import pytest

from xent_plugin.app.data import BreastCancerDataModule, DigitsDataModule, MarkovDataModule, SyntheticDataModule


@pytest.mark.parametrize(
    ("datamodule_class", "kwargs", "argument"),
    [
        (DigitsDataModule, {"batch_size": 0}, "batch_size"),
        (DigitsDataModule, {"seed": -1}, "seed"),
        (DigitsDataModule, {"num_workers": 1.5}, "num_workers"),
        (BreastCancerDataModule, {"test_fraction": 1.2}, "test_fraction"),
        (SyntheticDataModule, {"n_samples": 0}, "n_samples"),
        (SyntheticDataModule, {"num_classes": 1}, "num_classes"),
        (SyntheticDataModule, {"num_features": 0}, "num_features"),
        (SyntheticDataModule, {"separation": -1.0}, "separation"),
        (SyntheticDataModule, {"label_noise": 1.0}, "label_noise"),
        (MarkovDataModule, {"vocab_size": 1}, "vocab_size"),
        (MarkovDataModule, {"concentration": 0.0}, "concentration"),
        (MarkovDataModule, {"seq_len": 5, "min_len": 6}, "min_len"),
        (MarkovDataModule, {"vocab_size": 16, "ignore_index": 3}, "ignore_index"),
    ],
)
def test_bad_arguments_raise_value_errors_naming_the_argument_and_value(datamodule_class, kwargs, argument):
    with pytest.raises(ValueError, match=f"`{argument}`.*got {kwargs[argument]!r}"):
        datamodule_class(**kwargs)
