"""extract_features: shapes, dtypes, eval-mode handling, normalisation, autocast."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from varcon.evaluation import extract_features
from varcon.evaluation.features import owning_module
from varcon.models import build_network


class _Recorder(nn.Module):
    """BN + linear model that records the training flag seen by every forward call."""

    def __init__(self) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(4)
        self.fc = nn.Linear(4, 3)
        self.modes: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.modes.append(self.training)
        return self.fc(self.bn(x.flatten(1)))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self(x)


def _loader(n: int = 10, batch: int = 4, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 2, 2, generator=g)
    y = torch.randint(5, (n,), generator=g)
    return [(x[i : i + batch], y[i : i + batch]) for i in range(0, n, batch)]


@pytest.mark.parametrize("use_method", [True, False])
def test_shapes_dtypes_and_mode_restored(use_method: bool) -> None:
    model = _Recorder().train()
    model.bn.eval()  # a sub-module in a different mode must come back as it was
    fn = model.encode if use_method else model
    loader = _loader()
    feats, labels = extract_features(fn, loader)
    assert feats.shape == (10, 3) and feats.dtype == torch.float32 and feats.device.type == "cpu"
    assert labels.shape == (10,) and labels.dtype == torch.int64
    torch.testing.assert_close(labels, torch.cat([y for _, y in loader]))
    assert model.modes == [False, False, False]
    assert model.training and model.fc.training and not model.bn.training
    assert not feats.requires_grad


def test_eval_module_stays_eval_and_matches_direct_forward() -> None:
    torch.manual_seed(0)
    net = build_network("supcon", "small_cnn", num_classes=3, in_channels=1, image_size=8)
    net(torch.randn(8, 1, 8, 8))  # move BN statistics away from the defaults
    x = torch.randn(6, 1, 8, 8)
    loader = [(x[:4], torch.tensor([0, 1, 2, 0])), (x[4:], torch.tensor([1, 2]))]
    feats, _ = extract_features(net.encode, loader)
    assert net.training  # restored
    net.eval()
    with torch.no_grad():
        torch.testing.assert_close(feats, net.encode(x))
    extract_features(net.encode, loader)
    assert not net.training


def test_plain_callable_leaves_modes_alone() -> None:
    model = _Recorder().train()
    extract_features(lambda x: model(x), _loader())
    assert model.modes == [True, True, True]
    assert owning_module(lambda x: x) is None
    assert owning_module(model.encode) is model and owning_module(model) is model


def test_mode_restored_on_error() -> None:
    model = _Recorder().train()

    def bad_loader():
        yield torch.randn(2, 1, 2, 2), torch.tensor([0, 1])
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        extract_features(model.encode, bad_loader())
    assert model.training and model.bn.training


def test_normalize() -> None:
    feats, _ = extract_features(_Recorder(), _loader(), normalize=True)
    torch.testing.assert_close(feats.norm(dim=1), torch.ones(10))


def test_non_tensor_labels_and_device_object() -> None:
    loader = [(torch.randn(2, 1, 2, 2), [3, 4]), (torch.randn(1, 1, 2, 2), 7)]
    feats, labels = extract_features(_Recorder(), loader, device=torch.device("cpu"))
    assert feats.shape == (3, 3)
    assert labels.tolist() == [3, 4, 7] and labels.dtype == torch.int64


def test_autocast_bfloat16_on_cpu() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 8))
    loader = _loader()
    seen: list[torch.dtype] = []
    handle = model[1].register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    ref, _ = extract_features(model, loader)
    amp, _ = extract_features(model, loader, amp_dtype=torch.bfloat16)
    handle.remove()
    assert seen[:3] == [torch.float32] * 3 and seen[3:] == [torch.bfloat16] * 3
    assert amp.dtype == torch.float32
    torch.testing.assert_close(amp, ref, atol=0.05, rtol=0.05)


def test_errors() -> None:
    with pytest.raises(ValueError, match="no batches"):
        extract_features(_Recorder(), [])
    with pytest.raises(ValueError, match="labels"):
        extract_features(_Recorder(), [(torch.randn(3, 1, 2, 2), torch.tensor([0, 1]))])
