"""Network / build_network: methods, gradients, SyncBN, channels_last, state dicts."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn

from varcon.models import Network, ProjectionHead, build_network, create_model

ENCODERS = [("small_cnn", 1, 8), ("resnet18", 3, 16)]  # tiny inputs keep CPU tests fast


@pytest.mark.parametrize("method", ["varcon", "supcon"])
@pytest.mark.parametrize(("encoder", "channels", "size"), ENCODERS)
def test_contrastive_methods(method: str, encoder: str, channels: int, size: int) -> None:
    net = build_network(method, encoder, num_classes=10, in_channels=channels, image_size=size,
                        head_dim=16)
    assert isinstance(net, Network) and isinstance(net.head, ProjectionHead)
    assert net.head.in_dim == net.encoder.out_dim == net.out_dim
    assert net.head.hidden_dim == net.encoder.out_dim
    x = torch.randn(3, channels, size, size)
    z = net(x)
    assert z.shape == (3, 16)
    torch.testing.assert_close(z.norm(dim=1), torch.ones(3))
    assert net.encode(x).shape == (3, net.encoder.out_dim)


def test_head_hidden() -> None:
    net = build_network("supcon", "small_cnn", num_classes=3, in_channels=1, image_size=8,
                        head_dim=7, head_hidden=11)
    assert net.head.hidden_dim == 11 and net.head.out_dim == 7


@pytest.mark.parametrize(("encoder", "channels", "size"), ENCODERS)
def test_ce_method_gives_logits(encoder: str, channels: int, size: int) -> None:
    net = build_network("ce", encoder, num_classes=10, in_channels=channels, image_size=size)
    assert isinstance(net.head, nn.Linear)
    assert (net.head.in_features, net.head.out_features) == (net.encoder.out_dim, 10)
    x = torch.randn(3, channels, size, size)
    logits = net(x)
    assert logits.shape == (3, 10)
    torch.testing.assert_close(logits, net.head(net.encode(x)))
    assert not torch.allclose(logits.norm(dim=1), torch.ones(3))


def test_unknown_method() -> None:
    with pytest.raises(ValueError, match="byol"):
        build_network("byol", "small_cnn", num_classes=2, in_channels=1, image_size=8)


def test_encoder_kwargs_are_forwarded() -> None:
    net = build_network("supcon", "resnet18", num_classes=2, in_channels=3, image_size=32,
                        cifar_stem=False)
    assert net.encoder.conv1.kernel_size == (7, 7)
    with pytest.raises(TypeError, match="no_such_option"):
        build_network("supcon", "resnet18", num_classes=2, in_channels=3, image_size=32,
                      no_such_option=True)


def test_network_from_parts() -> None:
    enc = create_model("small_cnn", in_channels=1, image_size=8)
    head = ProjectionHead(enc.out_dim, out_dim=4)
    net = Network(enc, head)
    assert net.encoder is enc and net.head is head
    x = torch.randn(2, 1, 8, 8)
    net.eval()
    torch.testing.assert_close(net(x), head(enc(x)))
    torch.testing.assert_close(net.encode(x), enc(x))


@pytest.mark.parametrize("method", ["varcon", "ce"])
@pytest.mark.parametrize(("encoder", "channels", "size"), ENCODERS)
def test_gradients_reach_every_parameter(method: str, encoder: str, channels: int,
                                         size: int) -> None:
    torch.manual_seed(0)
    net = build_network(method, encoder, num_classes=4, in_channels=channels, image_size=size,
                        head_dim=8)
    out = net(torch.randn(4, channels, size, size))
    (out * torch.randn_like(out)).sum().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def _bn_count(module: nn.Module, kind: type[nn.Module]) -> int:
    return sum(isinstance(m, kind) for m in module.modules())


@pytest.mark.parametrize(("encoder", "channels", "size"), ENCODERS)
def test_sync_batchnorm_conversion(encoder: str, channels: int, size: int) -> None:
    torch.manual_seed(0)
    net = build_network("varcon", encoder, num_classes=3, in_channels=channels,
                        image_size=size, head_dim=8)
    ref = build_network("varcon", encoder, num_classes=3, in_channels=channels,
                        image_size=size, head_dim=8)
    ref.load_state_dict(net.state_dict())
    n_bn = _bn_count(net, nn.BatchNorm2d)
    assert n_bn > 0
    synced = nn.SyncBatchNorm.convert_sync_batchnorm(net)
    assert _bn_count(synced, nn.SyncBatchNorm) == n_bn
    assert _bn_count(synced, nn.BatchNorm2d) == 0
    assert synced.state_dict().keys() == ref.state_dict().keys()
    assert synced.encoder.out_dim == ref.encoder.out_dim
    # without a process group SyncBatchNorm computes plain batch norm: same function
    x = torch.randn(4, channels, size, size)
    torch.testing.assert_close(synced(x), ref(x))  # train mode (batch statistics)
    synced.eval()
    ref.eval()
    torch.testing.assert_close(synced(x), ref(x))  # eval mode (updated running statistics)


@pytest.mark.parametrize(("encoder", "channels", "size"), ENCODERS)
def test_channels_last(encoder: str, channels: int, size: int) -> None:
    torch.manual_seed(0)
    net = build_network("supcon", encoder, num_classes=3, in_channels=channels,
                        image_size=size, head_dim=8).eval()
    x = torch.randn(2, channels, size, size)
    with torch.no_grad():
        expected = net(x)
        net = net.to(memory_format=torch.channels_last)
        convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
        assert all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs)
        out = net(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(out, expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("method", ["varcon", "ce"])
@pytest.mark.parametrize(("encoder", "channels", "size"), ENCODERS)
def test_state_dict_round_trip(method: str, encoder: str, channels: int, size: int) -> None:
    def build() -> Network:
        return build_network(method, encoder, num_classes=5, in_channels=channels,
                             image_size=size, head_dim=8)

    torch.manual_seed(0)
    net = build()
    net(torch.randn(4, channels, size, size))  # train step: move BN running statistics
    net.eval()
    buf = io.BytesIO()
    torch.save(net.state_dict(), buf)
    buf.seek(0)
    torch.manual_seed(1)
    other = build().eval()
    x = torch.randn(2, channels, size, size)
    with torch.no_grad():
        assert not torch.allclose(other(x), net(x))
        other.load_state_dict(torch.load(buf, weights_only=True), strict=True)
        torch.testing.assert_close(other(x), net(x))
