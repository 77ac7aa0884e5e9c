"""The final linear layer of the classification networks, shaped for the task."""

from __future__ import annotations

from torch import Tensor, nn

from xent_plugin.app.models._task import check_num_classes, check_task


class ClassificationHead(nn.Module):
    """Linear map to logits: (B, num_classes) for ``task="multiclass"``, (B,) for ``task="binary"``.

    Example:
        >>> import torch
        >>> ClassificationHead(4, 2, task="binary")(torch.zeros(3, 4)).shape
        torch.Size([3])
    """

    def __init__(self, in_features: int, num_classes: int, task: str = "multiclass") -> None:
        super().__init__()
        check_task(task)
        check_num_classes(num_classes, task)
        self.binary = task == "binary"
        self.linear = nn.Linear(in_features, 1 if self.binary else num_classes)

    def forward(self, features: Tensor) -> Tensor:
        logits = self.linear(features)
        return logits.squeeze(-1) if self.binary else logits
