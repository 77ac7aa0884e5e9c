"""Fully connected ReLU network."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from xent_plugin.app.models._heads import ClassificationHead


class MLP(nn.Module):
    """Flatten, then ``Linear -> ReLU -> Dropout`` per hidden layer, then a linear head.

    Args:
        input_dim: number of input features after flattening.
        hidden_dims: width of each hidden layer; empty gives logistic regression.
        num_classes: number of classes (1 or 2 for ``task="binary"``).
        dropout: dropout probability after each hidden layer.
        task: ``"multiclass"`` or ``"binary"``.

    Example:
        >>> import torch
        >>> MLP(input_dim=8, hidden_dims=[16, 16], num_classes=4)(torch.zeros(5, 8)).shape
        torch.Size([5, 4])
    """

    def __init__(
        self,
        input_dim: int,
        hidden_dims: Sequence[int],
        num_classes: int,
        dropout: float = 0.0,
        task: str = "multiclass",
    ) -> None:
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"`dropout` must be in [0, 1), got {dropout!r}.")
        layers: list[nn.Module] = [nn.Flatten()]
        width = input_dim
        for hidden_dim in hidden_dims:
            layers += [nn.Linear(width, hidden_dim), nn.ReLU(), nn.Dropout(dropout)]
            width = hidden_dim
        self.body = nn.Sequential(*layers)
        self.head = ClassificationHead(width, num_classes, task)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))
