"""A small, fast CNN encoder for tiny images (e.g. scikit-learn's 8x8 digits)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .registry import register_model

__all__ = ["SmallCNN", "small_cnn"]


class SmallCNN(nn.Module):
    """Stack of 3x3 conv-BN-ReLU blocks + global average pool: ``[N, C, H, W] -> [N, out_dim]``.

    The first block keeps the resolution; each later block halves it (stride 2).
    ``out_dim`` is ``widths[-1]``. Works for any input size (global pooling).
    """

    def __init__(self, in_channels: int = 1, widths: Sequence[int] = (32, 64, 128)) -> None:
        super().__init__()
        widths = [int(w) for w in widths]
        if not widths or any(w < 1 for w in widths):
            raise ValueError(f"widths must be a non-empty sequence of positive ints: {widths}")
        if int(in_channels) < 1:
            raise ValueError(f"in_channels must be >= 1, got {in_channels}")
        layers: list[nn.Module] = []
        prev = int(in_channels)
        for i, w in enumerate(widths):
            layers += [
                nn.Conv2d(prev, w, kernel_size=3, stride=1 if i == 0 else 2, padding=1,
                          bias=False),
                nn.BatchNorm2d(w),
                nn.ReLU(inplace=True),
            ]
            prev = w
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.out_dim = prev
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``[N, in_channels, H, W]`` -> features ``[N, out_dim]``."""
        return torch.flatten(self.pool(self.features(x)), 1)


@register_model("small_cnn")
def small_cnn(
    *, in_channels: int = 1, image_size: int = 8, widths: Sequence[int] = (32, 64, 128)
) -> SmallCNN:
    """Small CNN encoder (``out_dim = widths[-1]``, 128 by default).

    ``image_size`` is validated but does not change the architecture (global pooling).
    """
    if int(image_size) < 1:
        raise ValueError(f"image_size must be >= 1, got {image_size}")
    return SmallCNN(in_channels=in_channels, widths=widths)
