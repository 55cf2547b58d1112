"""``method=simclr``: NT-Xent, each image its own class (self-supervised; labels unused)."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from varcon.losses import NTXentLoss
from varcon.losses.self_supervised import effective_rank

from .base import MethodOutput, MethodSpec
from .collapse import collapse_warnings

__all__ = ["SIMCLR"]


def _build(cfg: Any, num_classes: int) -> nn.Module:
    return NTXentLoss(cfg.loss.temperature, cfg.data.views,
                      gradient_scale=cfg.loss.gradient_scale,
                      equal_shards=True)  # the engine splits every batch evenly


def _compute(loss_fn: nn.Module, outputs: Tensor, labels: Tensor) -> MethodOutput:
    return MethodOutput(loss_fn(outputs.float()), {"effective_rank": effective_rank(outputs)},
                        {})


SIMCLR = MethodSpec(
    name="simclr", build_loss=_build, compute=_compute, labels="ignored",
    progress={"effective_rank": "erank"}, diagnose=collapse_warnings,
    description="SimCLR's NT-Xent (Chen et al. 2020): each image its own class, no labels",
)
