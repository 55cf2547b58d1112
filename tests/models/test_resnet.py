"""torchvision-based ResNet encoders: output dims, stems, options."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from varcon.models import ResNetEncoder, create_model

OUT_DIMS = {"resnet18": 512, "resnet34": 512, "resnet50": 2048, "resnet101": 2048}


@pytest.mark.parametrize(
    ("name", "size"),
    [
        ("resnet18", 8),
        ("resnet18", 32),
        ("resnet18", 96),
        ("resnet34", 8),
        ("resnet50", 32),
        ("resnet101", 8),
    ],
)
def test_output_shape(name: str, size: int) -> None:
    torch.manual_seed(0)
    enc = create_model(name, in_channels=3, image_size=size)
    assert isinstance(enc, ResNetEncoder)
    assert enc.out_dim == OUT_DIMS[name]
    out = enc(torch.randn(2, 3, size, size))
    assert out.shape == (2, OUT_DIMS[name])
    assert torch.isfinite(out).all()


def _layer4_hw(enc: nn.Module, size: int) -> tuple[int, int]:
    seen: list[torch.Size] = []
    handle = enc.layer4.register_forward_hook(lambda m, i, o: seen.append(o.shape))
    enc.eval()
    with torch.no_grad():
        enc(torch.randn(1, enc.conv1.in_channels, size, size))
    handle.remove()
    return seen[0][-2], seen[0][-1]


def test_cifar_stem_for_small_images() -> None:
    enc = create_model("resnet18", in_channels=3, image_size=32)
    assert enc.conv1.kernel_size == (3, 3)
    assert enc.conv1.stride == (1, 1)
    assert enc.conv1.padding == (1, 1)
    assert isinstance(enc.maxpool, nn.Identity)
    assert not any(isinstance(m, nn.MaxPool2d) for m in enc.modules())
    assert _layer4_hw(enc, 32) == (4, 4)  # only the 3 stride-2 stages downsample


def test_imagenet_stem_for_large_images() -> None:
    enc = create_model("resnet18", in_channels=3, image_size=96)
    assert enc.conv1.kernel_size == (7, 7)
    assert enc.conv1.stride == (2, 2)
    assert enc.conv1.padding == (3, 3)
    assert isinstance(enc.maxpool, nn.MaxPool2d)
    assert _layer4_hw(enc, 96) == (3, 3)  # 96 / 32


def test_stem_threshold_is_64() -> None:
    assert create_model("resnet18", image_size=64).conv1.kernel_size == (3, 3)
    assert create_model("resnet18", image_size=65).conv1.kernel_size == (7, 7)


def test_cifar_stem_override() -> None:
    forced_imagenet = create_model("resnet18", image_size=32, cifar_stem=False)
    assert forced_imagenet.conv1.kernel_size == (7, 7)
    assert isinstance(forced_imagenet.maxpool, nn.MaxPool2d)
    forced_cifar = create_model("resnet18", image_size=224, cifar_stem=True)
    assert forced_cifar.conv1.kernel_size == (3, 3)
    assert isinstance(forced_cifar.maxpool, nn.Identity)


@pytest.mark.parametrize("size", [8, 96])
def test_in_channels(size: int) -> None:
    enc = create_model("resnet18", in_channels=1, image_size=size)
    assert enc.conv1.in_channels == 1
    assert enc(torch.randn(2, 1, size, size)).shape == (2, 512)


@pytest.mark.parametrize(("name", "last_bn"), [("resnet18", "bn2"), ("resnet50", "bn3")])
def test_zero_init_residual(name: str, last_bn: str) -> None:
    def last_bn_weights(enc: nn.Module) -> list[torch.Tensor]:
        blocks = [b for layer in (enc.layer1, enc.layer2, enc.layer3, enc.layer4) for b in layer]
        return [getattr(b, last_bn).weight for b in blocks]

    assert all((w == 0).all() for w in last_bn_weights(create_model(name, zero_init_residual=True)))
    assert all((w == 1).all() for w in last_bn_weights(create_model(name)))


def test_matches_torchvision_weights_and_outputs() -> None:
    """ImageNet-stem encoder == torchvision resnet18 without fc (same keys, same function)."""
    torch.manual_seed(0)
    ref = torchvision.models.resnet18(weights=None).eval()
    state = {k: v for k, v in ref.state_dict().items() if not k.startswith("fc.")}
    enc = create_model("resnet18", image_size=224).eval()
    enc.load_state_dict(state, strict=True)
    ref.fc = nn.Identity()
    x = torch.randn(2, 3, 80, 80)
    with torch.no_grad():
        torch.testing.assert_close(enc(x), ref(x))


@pytest.mark.parametrize("kwargs", [{"in_channels": 0}, {"image_size": 0}])
def test_invalid_arguments(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        create_model("resnet18", **kwargs)


def test_width_scales_channels_parameters_and_out_dim() -> None:
    """``width`` sets the stem and first-stage channels (stages: width * (1, 2, 4, 8));
    resnet18 at width 16 has 0.70M parameters and 128-d features."""
    torch.manual_seed(0)
    enc = create_model("resnet18", in_channels=3, image_size=32, width=16)
    assert enc.out_dim == 128
    assert enc.conv1.out_channels == 16 and enc.bn1.num_features == 16
    assert [layer[0].conv1.out_channels for layer in
            (enc.layer1, enc.layer2, enc.layer3, enc.layer4)] == [16, 32, 64, 128]
    params = sum(p.numel() for p in enc.parameters())
    assert 0.69e6 < params < 0.71e6, params
    out = enc(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 128) and torch.isfinite(out).all()
    assert create_model("resnet34", image_size=96, width=8).out_dim == 8 * 8
    assert create_model("resnet18", image_size=96, in_channels=1, width=8).conv1.in_channels == 1
    full = sum(p.numel() for p in create_model("resnet18", image_size=32).parameters())
    assert 15 < full / params < 17  # parameters scale about as width ** 2
    for bad in (0, -4, 16.0, True):
        with pytest.raises(ValueError, match="width"):
            create_model("resnet18", width=bad)
