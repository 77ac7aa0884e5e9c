import pytest
import torch

from xent_plugin.app.models import MLP, LogisticRegression, SmallCNN, TinyGRU, TinyTransformer


@pytest.mark.parametrize(
    ("net", "inputs", "expected_shape"),
    [
        (LogisticRegression(input_dim=64, num_classes=10), torch.rand(4, 1, 8, 8), (4, 10)),
        (MLP(input_dim=8, hidden_dims=[16, 8], num_classes=4, dropout=0.1), torch.randn(4, 8), (4, 4)),
        (MLP(input_dim=8, hidden_dims=[], num_classes=3), torch.randn(4, 8), (4, 3)),
        (SmallCNN(in_channels=1, num_classes=10), torch.rand(4, 1, 8, 8), (4, 10)),
        (TinyGRU(vocab_size=16), torch.randint(16, (4, 7)), (4, 7, 16)),
        (TinyTransformer(vocab_size=16, max_len=32), torch.randint(16, (4, 7)), (4, 7, 16)),
    ],
    ids=["logistic_regression", "mlp", "mlp_without_hidden_layers", "small_cnn", "tiny_gru", "tiny_transformer"],
)
def test_output_shape(net, inputs, expected_shape):
    assert net(inputs).shape == expected_shape


@pytest.mark.parametrize("num_classes", [1, 2])
@pytest.mark.parametrize(
    "make_net",
    [
        lambda num_classes: LogisticRegression(30, num_classes, task="binary"),
        lambda num_classes: MLP(30, [8], num_classes, task="binary"),
    ],
    ids=["logistic_regression", "mlp"],
)
def test_binary_task_gives_one_logit_per_row(make_net, num_classes):
    assert make_net(num_classes)(torch.randn(5, 30)).shape == (5,)


@pytest.mark.parametrize("size", [3, 8, 12, 28])
def test_small_cnn_accepts_other_square_sizes(size):
    net = SmallCNN(in_channels=3, num_classes=5, channels=(4, 8, 8))
    assert net(torch.rand(2, 3, size, size)).shape == (2, 5)


@pytest.mark.parametrize(
    "net", [TinyGRU(vocab_size=11), TinyTransformer(vocab_size=11, max_len=16)], ids=["gru", "transformer"]
)
def test_sequence_models_do_not_look_ahead(net):
    tokens = torch.randint(11, (3, 10), generator=torch.Generator().manual_seed(0))
    changed = tokens.clone()
    changed[:, 6:] = (changed[:, 6:] + 1) % 11
    torch.testing.assert_close(net(changed)[:, :6], net(tokens)[:, :6])


def test_transformer_rejects_sequences_longer_than_max_len():
    with pytest.raises(ValueError, match="`max_len`"):
        TinyTransformer(vocab_size=4, max_len=5)(torch.zeros(1, 6, dtype=torch.long))


@pytest.mark.parametrize(
    ("make_net", "argument"),
    [
        (lambda: LogisticRegression(30, 3, task="binary"), "num_classes"),
        (lambda: LogisticRegression(30, 1), "num_classes"),
        (lambda: LogisticRegression(30, 2, task="regression"), "task"),
        (lambda: MLP(8, [4], 3, dropout=1.0), "dropout"),
        (lambda: SmallCNN(1, 10, channels=()), "channels"),
        (lambda: TinyTransformer(8, d_model=30, num_heads=4), "num_heads"),
    ],
)
def test_bad_arguments_raise_value_errors_naming_the_argument(make_net, argument):
    with pytest.raises(ValueError, match=f"`{argument}`"):
        make_net()
