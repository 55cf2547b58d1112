"""Small CNN encoder for tiny images."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from varcon.models import SmallCNN, create_model


@pytest.mark.parametrize(("channels", "size"), [(1, 8), (3, 32), (3, 96)])
def test_output_shape(channels: int, size: int) -> None:
    enc = create_model("small_cnn", in_channels=channels, image_size=size)
    assert isinstance(enc, SmallCNN)
    assert enc.out_dim == 128
    out = enc(torch.randn(4, channels, size, size))
    assert out.shape == (4, 128)
    assert torch.isfinite(out).all()


def test_structure_conv_bn_relu() -> None:
    enc = create_model("small_cnn", in_channels=1, image_size=8)
    kinds = [type(m) for m in enc.features]
    assert kinds == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU] * 3
    strides = [m.stride for m in enc.features if isinstance(m, nn.Conv2d)]
    assert strides == [(1, 1), (2, 2), (2, 2)]
    # small enough to train in seconds on a CPU
    assert sum(p.numel() for p in enc.parameters()) < 150_000


def test_custom_widths() -> None:
    enc = create_model("small_cnn", in_channels=1, image_size=8, widths=(8, 16))
    assert enc.out_dim == 16
    assert enc(torch.randn(2, 1, 8, 8)).shape == (2, 16)


@pytest.mark.parametrize(
    "kwargs", [{"widths": ()}, {"widths": (8, 0)}, {"in_channels": 0}, {"image_size": 0}]
)
def test_invalid_arguments(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        create_model("small_cnn", **kwargs)
