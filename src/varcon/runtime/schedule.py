"""Learning-rate schedule and the LARS optimizer."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

__all__ = ["LARS", "WarmupCosine", "build_optimizer"]


class WarmupCosine:
    r"""Per-step learning rate: linear warm-up, then cosine decay.

    With T total steps, W warm-up steps, base rate ``lr`` and floor ``lr_min = lr *
    min_lr_ratio``, step t (0-based) gets

        cosine(t) = lr_min + (lr - lr_min) * (1 + cos(pi * t / T)) / 2
        lr(t)     = lr * warmup_from + (cosine(W) - lr * warmup_from) * t / W   for t < W
                  = cosine(t)                                                   otherwise

    (SupContrast's ``--cosine --warm``, evaluated per step rather than per epoch.)
    """

    def __init__(
        self,
        lr: float,
        total_steps: int,
        warmup_steps: int = 0,
        warmup_from: float = 0.01,
        min_lr_ratio: float = 0.001,
    ) -> None:
        if total_steps < 1:
            raise ValueError(f"total_steps must be >= 1, got {total_steps}")
        self.lr = lr
        self.total_steps = total_steps
        self.warmup_steps = min(warmup_steps, total_steps - 1) if warmup_steps else 0
        self.warmup_from = warmup_from
        self.lr_min = lr * min_lr_ratio

    def _cosine(self, step: int) -> float:
        progress = min(step, self.total_steps) / self.total_steps
        return self.lr_min + (self.lr - self.lr_min) * (1 + math.cos(math.pi * progress)) / 2

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            start = self.lr * self.warmup_from
            return start + (self._cosine(self.warmup_steps) - start) * step / self.warmup_steps
        return self._cosine(step)

    def apply(self, optimizer: torch.optim.Optimizer, step: int) -> float:
        lr = self(step)
        for group in optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        return lr


class LARS(torch.optim.Optimizer):
    r"""SGD with momentum and layer-wise adaptive rate scaling (You et al., 2017).

    For each parameter tensor p with gradient g (weight decay wd added to g first),
    the update direction is scaled by the trust ratio

        ratio = eta * ||p|| / ||g + wd * p||      (1 where either norm is 0)

    Biases and normalisation parameters (``lars_exclude=True`` groups) use plain SGD.
    """

    def __init__(
        self,
        params: Any,
        lr: float,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        eta: float = 0.001,
        nesterov: bool = False,
    ) -> None:
        defaults = dict(
            lr=lr, momentum=momentum, weight_decay=weight_decay, eta=eta, nesterov=nesterov,
            lars_exclude=False,
        )
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                d_p = p.grad
                if group["weight_decay"] and not group["lars_exclude"]:
                    d_p = d_p.add(p, alpha=group["weight_decay"])
                if not group["lars_exclude"]:
                    p_norm, g_norm = torch.linalg.vector_norm(p), torch.linalg.vector_norm(d_p)
                    ratio = torch.where(
                        (p_norm > 0) & (g_norm > 0), group["eta"] * p_norm / g_norm, 1.0
                    )
                    d_p = d_p.mul(ratio)
                if group["momentum"]:
                    state = self.state[p]
                    buf = state.get("momentum_buffer")
                    if buf is None:
                        buf = state["momentum_buffer"] = d_p.clone()
                    else:
                        buf.mul_(group["momentum"]).add_(d_p)
                    d_p = d_p.add(buf, alpha=group["momentum"]) if group["nesterov"] else buf
                p.add_(d_p, alpha=-group["lr"])
        return loss


def build_optimizer(
    model: nn.Module,
    name: str,
    lr: float,
    momentum: float,
    weight_decay: float,
    nesterov: bool = False,
) -> torch.optim.Optimizer:
    """SGD (weight decay on every parameter, as SupContrast and the VarCon code do) or
    LARS (biases and norm parameters excluded from decay and adaptation)."""
    if name == "sgd":
        return torch.optim.SGD(
            model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay,
            nesterov=nesterov,
        )
    if name == "lars":
        regular = [p for p in model.parameters() if p.ndim > 1]
        excluded = [p for p in model.parameters() if p.ndim <= 1]
        groups = [
            {"params": regular},
            {"params": excluded, "lars_exclude": True, "weight_decay": 0.0},
        ]
        return LARS(groups, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov)
    raise ValueError(f"optimizer must be 'sgd' or 'lars', got {name!r}")
