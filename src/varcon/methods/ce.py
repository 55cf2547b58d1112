"""``method=ce``: cross-entropy on one view per image, a linear classifier as the head."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from .base import MethodOutput, MethodSpec

__all__ = ["CE"]


def _build(cfg: Any, num_classes: int) -> nn.Module:
    return nn.CrossEntropyLoss()


def _compute(loss_fn: nn.Module, outputs: Tensor, labels: Tensor) -> MethodOutput:
    return MethodOutput(loss_fn(outputs.float(), labels), {}, {})


CE = MethodSpec(
    name="ce", build_loss=_build, compute=_compute, head="classifier", multi_view=False,
    description="cross-entropy: the supervised baseline (one view, a linear classifier head)",
)
