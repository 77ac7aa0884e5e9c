import numpy as np
import pytest

from xent_plugin.app.data._random import sample_categorical, seeded_rng
from xent_plugin.app.data._splits import check_split_fractions, split_indices


def test_split_indices_partition_every_row_exactly_once():
    train, val, test = split_indices(101, 0.2, 0.1, np.random.default_rng(0))
    assert (len(train), len(val), len(test)) == (71, 20, 10)
    np.testing.assert_array_equal(np.sort(np.concatenate([train, val, test])), np.arange(101))


def test_split_indices_refuse_to_leave_no_training_rows():
    with pytest.raises(ValueError, match="no training data"):
        split_indices(3, 0.5, 0.4, np.random.default_rng(0))


@pytest.mark.parametrize(
    ("val_fraction", "test_fraction", "named"),
    [(-0.1, 0.2, "val_fraction"), (0.2, 1.0, "test_fraction"), (0.6, 0.5, "val_fraction` \\+ `test_fraction")],
)
def test_bad_split_fractions_name_the_argument(val_fraction, test_fraction, named):
    with pytest.raises(ValueError, match=f"`{named}`"):
        check_split_fractions(val_fraction, test_fraction)


def test_named_streams_are_reproducible_and_independent():
    assert seeded_rng(3, "split").integers(1 << 30) == seeded_rng(3, "split").integers(1 << 30)
    assert seeded_rng(3, "split").integers(1 << 30) != seeded_rng(3, "samples").integers(1 << 30)


def test_sample_categorical_matches_the_row_frequencies():
    probs = np.tile([0.1, 0.6, 0.3], (20_000, 1))
    draws = sample_categorical(probs, np.random.default_rng(0))
    np.testing.assert_allclose(np.bincount(draws, minlength=3) / len(draws), probs[0], atol=0.015)
