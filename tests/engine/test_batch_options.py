"""The engine with data.sampler=class_balanced and train.micro_batch (built-in digits, CPU)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import varcon.engine.state as state_mod
from varcon.data.sampling import ClassBalancedBatchSampler, EpochBatchSampler
from varcon.engine.pretrain import pretrain
from varcon.models import registry as registry_mod
from varcon.runtime.checkpoint import load_checkpoint
from varcon.runtime.config import Config, ConfigError, apply_overrides, config_from_dict, read_yaml
from varcon.runtime.config import resolve_config_path as _resolve
from varcon.runtime.data import build_train_data, build_train_sampler

FAST = [
    "optim.epochs=2", "optim.warmup_epochs=1", "optim.batch_size=64",
    "train.max_steps_per_epoch=4", "linear.run_after_pretrain=false", "train.progress=off",
    "train.tau2_every=0",
]


def digits_config(tmp_path: Path, *overrides: str, name: str = "run") -> Config:
    data = read_yaml(_resolve("digits"))
    data["output_dir"] = str(tmp_path / name)
    return config_from_dict(apply_overrides(data, [*FAST, *overrides]))


def record_loss_inputs(monkeypatch: pytest.MonkeyPatch,
                       nan_at: frozenset[int] = frozenset()) -> list[torch.Tensor]:
    """Wrap the training loss: log the labels of every call (and return NaN at ``nan_at``)."""
    seen: list[torch.Tensor] = []
    real = state_mod.build_loss

    class Spy(nn.Module):
        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, outputs: torch.Tensor, labels: torch.Tensor, **kw: Any) -> Any:
            out = self.inner(outputs, labels, **kw)
            seen.append(labels.detach().cpu())
            if len(seen) - 1 in nan_at:
                return (out[0] * float("nan"), *out[1:]) if isinstance(out, tuple) else out * 0 / 0
            return out

    monkeypatch.setattr(state_mod, "build_loss", lambda cfg, n: Spy(real(cfg, n)))
    return seen


class _NoNormCNN(nn.Module):
    """Conv-ReLU stack without BatchNorm: every row is encoded independently."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, 16, 3, padding=1), nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.out_dim = 32

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@pytest.fixture
def no_norm_encoder(monkeypatch: pytest.MonkeyPatch) -> str:
    def factory(*, in_channels: int = 1, image_size: int = 8) -> nn.Module:
        return _NoNormCNN(in_channels)

    monkeypatch.setitem(registry_mod._REGISTRY, "test_no_norm_cnn", factory)
    return "test_no_norm_cnn"


# ------------------------------------------------------------------------ class-balanced


def test_class_balanced_batches_in_training(tmp_path, monkeypatch):
    seen = record_loss_inputs(monkeypatch)
    cfg = digits_config(tmp_path, "data.sampler=class_balanced", "data.samples_per_class=4",
                        "optim.batch_size=40", "optim.epochs=1", "optim.warmup_epochs=0",
                        "train.max_steps_per_epoch=0", "data.per_class=42")
    pretrain(cfg)
    expected = ClassBalancedBatchSampler(build_train_data(cfg).dataset.targets, 40, 4)
    steps = expected.batches_per_epoch
    assert steps == 10  # 42 // 4 = 10 groups of each of the 10 classes, 10 classes a batch
    assert len(seen) == steps  # a whole epoch of the documented length
    for labels in seen:  # 10 classes x 4 images x 2 views per step
        assert Counter(labels.tolist()) == {c: 8 for c in range(10)}
    state = load_checkpoint(tmp_path / "run")
    assert state["epoch"] == 1 and state["step_in_epoch"] == 0


def test_default_sampler_is_unchanged(tmp_path):
    """data.sampler=random (the default) is the EpochBatchSampler of earlier releases."""
    cfg = digits_config(tmp_path)
    assert cfg.data.sampler == "random" and cfg.train.micro_batch == 0
    dataset = build_train_data(cfg).dataset
    sampler = build_train_sampler(cfg, dataset)
    assert type(sampler) is EpochBatchSampler
    sampler.set_epoch(3, 2)
    before = EpochBatchSampler(len(dataset), 64, seed=cfg.seed)
    before.set_epoch(3, 2)
    assert list(sampler) == list(before)


def test_samples_per_class_above_the_smallest_class_fails_before_training(tmp_path,
                                                                          monkeypatch):
    seen = record_loss_inputs(monkeypatch)
    cfg = digits_config(tmp_path, "data.sampler=class_balanced", "data.samples_per_class=8",
                        "optim.batch_size=16", "data.per_class=5")
    with pytest.raises(ValueError, match=r"exceeds the smallest class \(5 images.*lower "
                                         r"data.samples_per_class to at most 5"):
        pretrain(cfg)
    assert seen == []


# ---------------------------------------------------------------------------- micro-batch


@pytest.mark.parametrize("method", ["varcon", "ce"])
def test_micro_batch_trains_like_the_full_batch_without_batchnorm(tmp_path, no_norm_encoder,
                                                                   method):
    extra = [f"model.encoder={no_norm_encoder}", f"method={method}"]
    if method == "ce":
        extra.append("data.views=1")
    pretrain(digits_config(tmp_path, *extra, name="full"))
    pretrain(digits_config(tmp_path, *extra, "train.micro_batch=16", name="chunked"))
    full = load_checkpoint(tmp_path / "full")["model"]
    chunked = load_checkpoint(tmp_path / "chunked")["model"]
    for key in full:  # 8 SGD steps with momentum
        torch.testing.assert_close(chunked[key], full[key], rtol=1e-4, atol=1e-5, msg=key)


def test_micro_batch_with_batchnorm_updates_statistics_once_per_chunk(tmp_path, monkeypatch):
    seen = record_loss_inputs(monkeypatch, nan_at=frozenset({1}))
    pretrain(digits_config(tmp_path, "train.micro_batch=32"))  # 2 chunks of 32 images
    assert [len(labels) for labels in seen] == [128] * 8  # one loss call per step, all rows
    state = load_checkpoint(tmp_path / "run")["model"]
    tracked = [v for k, v in state.items() if k.endswith("num_batches_tracked")]
    # 8 steps, the second skipped (its statistics restored): 7 x 2 chunks
    assert tracked and all(int(v) == 7 * 2 for v in tracked)
    assert all(torch.isfinite(v.float()).all() for v in state.values())


@pytest.mark.parametrize("overrides, message", [
    (["data.sampler=balanced"], "data.sampler: must be one of random, class_balanced"),
    (["data.sampler=class_balanced"], "needs data.samples_per_class"),
    (["data.samples_per_class=4"], "only used by the class-balanced sampler: set "
                                   "data.sampler=class_balanced"),
    (["data.sampler=class_balanced", "data.samples_per_class=5"],
     "samples_per_class=5 must divide optim.batch_size=64 .* use a batch of 60 or 65"),
    (["train.micro_batch=128"], "micro_batch=128 is larger than the batch"),
    (["train.micro_batch=24"], "micro_batch=24 must divide optim.batch_size=64 .* e.g. 16"),
    (["train.micro_batch=-1"], "train.micro_batch: must be >= 0"),
])
def test_bad_batch_options_are_config_errors(tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message):
        digits_config(tmp_path, *overrides)
    assert not (tmp_path / "run").exists()
