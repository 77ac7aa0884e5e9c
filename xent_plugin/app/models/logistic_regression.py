"""Multinomial (or, for a binary task, ordinary) logistic regression."""

from __future__ import annotations

from torch import Tensor, nn

from xent_plugin.app.models._heads import ClassificationHead


class LogisticRegression(nn.Module):
    """Flatten, then one linear layer to logits: (B, num_classes), or (B,) for ``task="binary"``.

    Args:
        input_dim: number of input features after flattening.
        num_classes: number of classes (1 or 2 for ``task="binary"``).
        task: ``"multiclass"`` or ``"binary"``.

    Example:
        >>> import torch
        >>> LogisticRegression(input_dim=64, num_classes=10)(torch.zeros(5, 1, 8, 8)).shape
        torch.Size([5, 10])
    """

    def __init__(self, input_dim: int, num_classes: int, task: str = "multiclass") -> None:
        super().__init__()
        self.flatten = nn.Flatten()
        self.head = ClassificationHead(input_dim, num_classes, task)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.flatten(x))
