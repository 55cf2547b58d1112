"""Short engine runs for tests (``from short_runs import ...``): the digits quickstart cut to a
few steps, on a given device (the CPU tests of the GPU branches and ``tests/gpu``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import varcon.engine.state as state_mod
from varcon.engine.pretrain import pretrain
from varcon.runtime.checkpoint import load_checkpoint
from varcon.runtime.config import (
    Config,
    apply_overrides,
    config_from_dict,
    read_yaml,
    resolve_config_path,
)

STEPS = 4


def gpu_device() -> torch.device:
    """The device the GPU tests run on: ``cuda:0``, or ``VARCON_GPU_TESTS_DEVICE`` (a check of
    the tests' logic on a CPU)."""
    return torch.device(os.environ.get("VARCON_GPU_TESTS_DEVICE") or "cuda:0")


FAST = [
    "optim.epochs=1", "optim.warmup_epochs=0", "optim.batch_size=32",
    f"train.max_steps_per_epoch={STEPS}", "linear.run_after_pretrain=false",
    "train.progress=off", "train.tau2_every=0",
]
CPU = torch.device("cpu")


def digits_config(tmp_path: Path, device: torch.device = CPU, *overrides: str,
                  name: str = "run") -> Config:
    data = read_yaml(resolve_config_path("digits"))
    data["output_dir"] = str(tmp_path / name)
    return config_from_dict(apply_overrides(
        data, [*FAST, f"train.device={device.type}", *overrides]))


def train(tmp_path: Path, device: torch.device = CPU, *overrides: str,
          name: str = "run") -> dict[str, torch.Tensor]:
    """Final weights (on the CPU) of a short digits run on ``device``."""
    pretrain(digits_config(tmp_path, device, *overrides, name=name))
    return load_checkpoint(tmp_path / name)["model"]


def max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys(), "different parameter names"
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a if a[k].numel())


def assert_finite(weights: dict[str, torch.Tensor], what: str) -> None:
    bad = [k for k, v in weights.items() if v.is_floating_point() and not v.isfinite().all()]
    assert not bad, f"{what}: non-finite weights in {bad[:5]}"


def watch_loss(monkeypatch: pytest.MonkeyPatch, before_loss: Any = None) -> list[torch.dtype]:
    """Wrap the training loss: records the dtype of the features it receives (the head's
    output: bf16/fp16 under autocast); ``before_loss(call, features)`` may replace them."""
    dtypes: list[torch.dtype] = []
    real = state_mod.build_loss

    class Wrapped(nn.Module):
        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, features: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
            dtypes.append(features.dtype)
            if before_loss is not None:
                features = before_loss(len(dtypes) - 1, features)
            return self.inner(features, *args, **kwargs)

    monkeypatch.setattr(state_mod, "build_loss", lambda cfg, n: Wrapped(real(cfg, n)))
    return dtypes


class InfGradient(torch.autograd.Function):
    """Identity forward; backward sends an infinite gradient: an fp16 overflow."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return grad * float("inf")


def record_scaler(monkeypatch: pytest.MonkeyPatch) -> list[tuple[bool, float]]:
    """Wrap the engine's GradScaler (``train.amp=fp16``): the returned list gets, per step,
    whether the optimiser step changed the weights and the scale after ``update``. The
    scaler must be enabled and of the run's device type."""
    log: list[tuple[bool, float]] = []

    class Recording(torch.amp.GradScaler):
        def step(self, optimizer: torch.optim.Optimizer, *args: Any, **kwargs: Any) -> Any:
            params = [p for g in optimizer.param_groups for p in g["params"]]
            before = [p.detach().clone() for p in params]
            out = super().step(optimizer, *args, **kwargs)
            self._changed = any(not torch.equal(p, b)
                                for p, b in zip(params, before, strict=True))
            return out

        def update(self, new_scale: Any = None) -> None:
            super().update(new_scale)
            log.append((self._changed, self.get_scale()))

    real = state_mod.grad_scaler

    def recording(amp_dtype: torch.dtype | None, dev: torch.device) -> torch.amp.GradScaler:
        scaler = real(amp_dtype, dev)
        assert scaler.is_enabled() and scaler._device == dev.type, \
            f"train.amp=fp16 on {dev}: an enabled {dev.type} GradScaler, got {scaler._device}"
        return Recording(dev.type, init_scale=scaler.get_scale())

    monkeypatch.setattr(state_mod, "grad_scaler", recording)
    return log
