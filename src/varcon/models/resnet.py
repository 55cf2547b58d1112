"""ResNet encoders built from torchvision's ResNets (``weights=None``), classifier removed.

CIFAR stem (SupCon's ``resnet_big``): ``conv1`` 3x3 stride 1 padding 1 and no max-pool.
ImageNet stem: torchvision's ``conv1`` 7x7 stride 2 padding 3 and 3x3 stride-2 max-pool.
The stem is chosen automatically from ``image_size`` (CIFAR stem when ``image_size <= 64``)
unless ``cifar_stem`` is given.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torchvision
from torch import nn

from .registry import register_model

__all__ = ["CIFAR_STEM_MAX_SIZE", "ResNetEncoder", "resnet_encoder"]

CIFAR_STEM_MAX_SIZE = 64

_BUILDERS: dict[str, Callable[..., torchvision.models.ResNet]] = {
    "resnet18": torchvision.models.resnet18,
    "resnet34": torchvision.models.resnet34,
    "resnet50": torchvision.models.resnet50,
    "resnet101": torchvision.models.resnet101,
}


class ResNetEncoder(nn.Module):
    """torchvision ResNet body + global average pool: ``[N, C, H, W] -> [N, out_dim]``.

    Sub-module names match torchvision's (``conv1``, ``bn1``, ``layer1`` ... ``layer4``),
    so a torchvision state dict without ``fc.*`` loads into an ImageNet-stem encoder.
    """

    def __init__(self, resnet: torchvision.models.ResNet, out_dim: int) -> None:
        super().__init__()
        self.conv1 = resnet.conv1
        self.bn1 = resnet.bn1
        self.relu = resnet.relu
        self.maxpool = resnet.maxpool
        self.layer1 = resnet.layer1
        self.layer2 = resnet.layer2
        self.layer3 = resnet.layer3
        self.layer4 = resnet.layer4
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.out_dim = int(out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``[N, in_channels, H, W]`` -> features ``[N, out_dim]``."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)


def resnet_encoder(
    arch: str,
    *,
    in_channels: int = 3,
    image_size: int = 224,
    cifar_stem: bool | None = None,
    zero_init_residual: bool = False,
) -> ResNetEncoder:
    """Build a ResNet encoder (``arch`` in resnet18/34/50/101), randomly initialised.

    ``out_dim`` is 512 for resnet18/34 and 2048 for resnet50/101.
    """
    if arch not in _BUILDERS:
        raise ValueError(f"unknown ResNet {arch!r}; available: {sorted(_BUILDERS)}")
    if int(in_channels) < 1:
        raise ValueError(f"in_channels must be >= 1, got {in_channels}")
    if int(image_size) < 1:
        raise ValueError(f"image_size must be >= 1, got {image_size}")
    if cifar_stem is None:
        cifar_stem = image_size <= CIFAR_STEM_MAX_SIZE
    net = _BUILDERS[arch](weights=None, zero_init_residual=zero_init_residual)
    out_dim = net.fc.in_features
    if cifar_stem:
        net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
    elif in_channels != 3:
        net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    # Same initialisation torchvision applies to its convolutions.
    nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
    return ResNetEncoder(net, out_dim)


def _make_factory(arch: str) -> Callable[..., ResNetEncoder]:
    def factory(
        *,
        in_channels: int = 3,
        image_size: int = 224,
        cifar_stem: bool | None = None,
        zero_init_residual: bool = False,
    ) -> ResNetEncoder:
        return resnet_encoder(
            arch,
            in_channels=in_channels,
            image_size=image_size,
            cifar_stem=cifar_stem,
            zero_init_residual=zero_init_residual,
        )

    factory.__name__ = arch
    factory.__doc__ = f"{arch} encoder (torchvision, weights=None); see ``resnet_encoder``."
    return factory


for _arch in _BUILDERS:
    register_model(_arch)(_make_factory(_arch))
