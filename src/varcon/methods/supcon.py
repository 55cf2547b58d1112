"""``method=supcon``: SupCon's L_out over all views of the (global) batch."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from varcon.losses import SupConLoss

from .base import MethodOutput, MethodSpec

__all__ = ["SUPCON"]


def _build(cfg: Any, num_classes: int) -> nn.Module:
    return SupConLoss(cfg.loss.temperature, num_classes=num_classes,
                      gradient_scale=cfg.loss.gradient_scale,
                      equal_shards=True)  # the engine splits every batch evenly


def _compute(loss_fn: nn.Module, outputs: Tensor, labels: Tensor) -> MethodOutput:
    return MethodOutput(loss_fn(outputs.float(), labels), {}, {})


SUPCON = MethodSpec(
    name="supcon", build_loss=_build, compute=_compute,
    description="SupCon (Khosla et al. 2020): every pair of the batch, L_out",
)
