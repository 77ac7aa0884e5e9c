"""Convolutional network for small square images such as the 8x8 digits."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from xent_plugin.app.models._heads import ClassificationHead

# Pooling to a fixed 2x2 grid keeps coarse layout (which half of the digit has ink) and makes any input size work.
_POOLED_SIZE = 2


class SmallCNN(nn.Module):
    """``Conv3x3 -> ReLU`` per entry of ``channels`` (size-preserving), adaptive average pooling to 2x2, linear head.

    Args:
        in_channels: channels of the input images (B, in_channels, H, W); any H, W >= 1.
        num_classes: number of classes (1 or 2 for ``task="binary"``).
        channels: output channels of each convolution.
        task: ``"multiclass"`` or ``"binary"``.

    Example:
        >>> import torch
        >>> SmallCNN(in_channels=1, num_classes=10)(torch.zeros(5, 1, 8, 8)).shape
        torch.Size([5, 10])
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        channels: Sequence[int] = (16, 32),
        task: str = "multiclass",
    ) -> None:
        super().__init__()
        if len(channels) == 0:
            raise ValueError(f"`channels` must list at least one convolution width, got {channels!r}.")
        layers: list[nn.Module] = []
        width = in_channels
        for out_channels in channels:
            layers += [nn.Conv2d(width, out_channels, kernel_size=3, padding=1), nn.ReLU()]
            width = out_channels
        layers += [nn.AdaptiveAvgPool2d(_POOLED_SIZE), nn.Flatten()]
        self.body = nn.Sequential(*layers)
        self.head = ClassificationHead(width * _POOLED_SIZE**2, num_classes, task)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))
