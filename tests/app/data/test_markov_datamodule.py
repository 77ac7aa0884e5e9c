import math

import numpy as np
import torch

from xent_plugin.app.data import MarkovDataModule


def _ready(**kwargs) -> MarkovDataModule:
    datamodule = MarkovDataModule(**kwargs)
    datamodule.setup()
    return datamodule


def _all_items(dataset) -> dict[str, torch.Tensor]:
    items = [dataset[i] for i in range(len(dataset))]
    return {key: torch.stack([item[key] for item in items]) for key in items[0]}


def test_transition_rows_are_distributions():
    matrix = MarkovDataModule(vocab_size=7).transition_matrix
    torch.testing.assert_close(matrix.sum(dim=1), torch.ones(7, dtype=torch.float64))
    assert (matrix >= 0).all()


def test_stationary_distribution_is_the_unit_left_eigenvector():
    datamodule = MarkovDataModule(vocab_size=9, concentration=0.3, seed=1)
    eigenvalues, eigenvectors = np.linalg.eig(datamodule.transition_matrix.numpy().T)
    leading = np.real(eigenvectors[:, np.argmin(np.abs(eigenvalues - 1))])
    np.testing.assert_allclose(datamodule.stationary_distribution.numpy(), leading / leading.sum(), atol=1e-10)


def test_entropy_rate_equals_the_stationary_weighted_row_entropies():
    datamodule = MarkovDataModule(vocab_size=6, concentration=0.2, seed=2)
    matrix, stationary = datamodule.transition_matrix.numpy(), datamodule.stationary_distribution.numpy()
    expected = 0.0
    for i in range(6):
        for j in range(6):
            if matrix[i, j] > 0:
                expected -= stationary[i] * matrix[i, j] * math.log(matrix[i, j])
    assert math.isclose(datamodule.entropy_rate, expected, rel_tol=1e-12)


def test_probs_are_the_transition_rows_of_the_input_tokens():
    datamodule = _ready(vocab_size=5, seq_len=10, n_sequences=50, min_len=3, batch_size=50)
    items = _all_items(datamodule.train_set)
    real = items["y"] != datamodule.ignore_index
    expected = datamodule.transition_matrix.float()[items["x"][real]]
    torch.testing.assert_close(items["probs"][real], expected)


def test_padded_positions_carry_ignore_index_zero_inputs_and_uniform_probs():
    datamodule = _ready(vocab_size=4, seq_len=12, n_sequences=200, min_len=2, ignore_index=-1, batch_size=8)
    items = _all_items(datamodule.val_set)
    padded = items["y"] == -1
    lengths = (~padded).sum(dim=1)
    assert lengths.min() >= 2 and lengths.max() <= 12 and padded.any()
    torch.testing.assert_close(padded, torch.arange(12) >= lengths[:, None])
    assert (items["x"][padded] == 0).all()
    torch.testing.assert_close(items["probs"][padded], torch.full((int(padded.sum()), 4), 0.25))


def test_targets_are_the_next_input_tokens():
    items = _all_items(_ready(vocab_size=8, seq_len=9, n_sequences=40, min_len=9, batch_size=8).train_set)
    torch.testing.assert_close(items["y"][:, :-1], items["x"][:, 1:])


def test_mean_log_loss_of_the_true_probs_approaches_the_entropy_rate():
    datamodule = _ready(vocab_size=6, seq_len=20, n_sequences=2000, min_len=20, batch_size=8, seed=3)
    items = _all_items(datamodule.train_set)
    log_loss = -items["probs"].double().gather(2, items["y"][..., None]).log().mean()
    assert math.isclose(log_loss, datamodule.entropy_rate, abs_tol=0.03)


def test_same_seed_gives_the_same_chain_and_sequences():
    first = _ready(n_sequences=30, batch_size=8, seed=4)
    second = _ready(n_sequences=30, batch_size=8, seed=4)
    torch.testing.assert_close(first.transition_matrix, second.transition_matrix)
    torch.testing.assert_close(first.test_set.y, second.test_set.y)


def test_batches_have_the_documented_keys_dtypes_and_shapes():
    datamodule = _ready(vocab_size=5, seq_len=7, n_sequences=40, min_len=4, batch_size=6)
    batch = next(iter(datamodule.train_dataloader()))
    assert set(batch) == {"x", "y", "probs"}
    assert batch["x"].shape == (6, 7) and batch["x"].dtype == torch.int64
    assert batch["y"].shape == (6, 7) and batch["y"].dtype == torch.int64
    assert batch["probs"].shape == (6, 7, 5) and batch["probs"].dtype == torch.float32
    assert (datamodule.task, datamodule.num_classes, datamodule.vocab_size) == ("multiclass", 5, 5)
