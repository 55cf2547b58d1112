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
    width: int = 64,
) -> ResNetEncoder:
    """Build a ResNet encoder (``arch`` in resnet18/34/50/101), randomly initialised.

    ``width`` is the number of channels of the stem and the first stage (torchvision: 64);
    the stages have ``width * (1, 2, 4, 8)`` planes, so parameters scale as ``width**2``
    (resnet18: 11.2M at 64, 0.70M at 16). ``out_dim`` is ``8 * width * expansion``:
    512 for resnet18/34 and 2048 for resnet50/101 at the default width.
    """
    if arch not in _BUILDERS:
        raise ValueError(f"unknown ResNet {arch!r}; available: {sorted(_BUILDERS)}")
    if int(in_channels) < 1:
        raise ValueError(f"in_channels must be >= 1, got {in_channels}")
    if int(image_size) < 1:
        raise ValueError(f"image_size must be >= 1, got {image_size}")
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise ValueError(f"width must be a positive integer (torchvision: 64), got {width!r}")
    if cifar_stem is None:
        cifar_stem = image_size <= CIFAR_STEM_MAX_SIZE
    net = _BUILDERS[arch](weights=None, zero_init_residual=zero_init_residual)
    if width != 64:
        _rebuild_stages(net, width, zero_init_residual)
    out_dim = net.fc.in_features
    if cifar_stem:
        net.conv1 = nn.Conv2d(in_channels, width, kernel_size=3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
    elif in_channels != 3 or width != 64:
        net.conv1 = nn.Conv2d(in_channels, width, kernel_size=7, stride=2, padding=3, bias=False)
    # Same initialisation torchvision applies to its convolutions.
    nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
    return ResNetEncoder(net, out_dim)


def _rebuild_stages(net: torchvision.models.ResNet, width: int, zero_init_residual: bool) -> None:
    """Replace the stem's BatchNorm and the four stages with ``width``-based ones.

    torchvision fixes the base width at 64; its own ``_make_layer`` builds the stages from
    ``net.inplanes``, so the blocks (and their initialisation) stay torchvision's.
    """
    block = type(net.layer1[0])
    depths = [len(getattr(net, f"layer{i}")) for i in range(1, 5)]
    net.inplanes = width
    net.bn1 = nn.BatchNorm2d(width)
    net.layer1 = net._make_layer(block, width, depths[0])
    net.layer2 = net._make_layer(block, 2 * width, depths[1], stride=2)
    net.layer3 = net._make_layer(block, 4 * width, depths[2], stride=2)
    net.layer4 = net._make_layer(block, 8 * width, depths[3], stride=2)
    net.fc = nn.Linear(8 * width * block.expansion, net.fc.out_features)
    for m in net.modules():  # torchvision's initialisation, applied to the new modules
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    if zero_init_residual:
        for m in net.modules():
            last_bn = getattr(m, "bn3", None) or getattr(m, "bn2", None)
            if isinstance(m, (torchvision.models.resnet.Bottleneck,
                              torchvision.models.resnet.BasicBlock)) and last_bn is not None:
                nn.init.zeros_(last_bn.weight)


def _make_factory(arch: str) -> Callable[..., ResNetEncoder]:
    def factory(
        *,
        in_channels: int = 3,
        image_size: int = 224,
        cifar_stem: bool | None = None,
        zero_init_residual: bool = False,
        width: int = 64,
    ) -> ResNetEncoder:
        return resnet_encoder(
            arch,
            in_channels=in_channels,
            image_size=image_size,
            cifar_stem=cifar_stem,
            zero_init_residual=zero_init_residual,
            width=width,
        )

    factory.__name__ = arch
    factory.__doc__ = f"{arch} encoder (torchvision, weights=None); see ``resnet_encoder``."
    return factory


for _arch in _BUILDERS:
    register_model(_arch)(_make_factory(_arch))
