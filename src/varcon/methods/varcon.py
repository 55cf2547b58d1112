"""``method=varcon``: the paper's loss (Eqs. 7-13) with its KL, NLL, tau2 and confidence."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from varcon.losses import VarConLoss

from .base import MethodOutput, MethodSpec

__all__ = ["VARCON"]


def _build(cfg: Any, num_classes: int) -> nn.Module:
    return VarConLoss(
        cfg.loss.temperature,
        cfg.loss.epsilon,
        num_classes=num_classes,
        detach_centroids=cfg.loss.detach_centroids,
        gradient_scale=cfg.loss.gradient_scale,
        prototypes=cfg.loss.prototypes,
        momentum=cfg.loss.momentum,
        # allocated now, so a skipped step can restore them like the BatchNorm buffers
        embedding_dim=cfg.model.head_dim if cfg.loss.prototypes == "ema" else None,
        equal_shards=True,  # the engine splits every global batch evenly over the ranks
    )


def _compute(loss_fn: nn.Module, outputs: Tensor, labels: Tensor) -> MethodOutput:
    loss, stats = loss_fn(outputs, labels, return_stats=True)
    tau2 = stats.tau2
    return MethodOutput(
        loss,
        {"kl": stats.kl.mean(), "nll": stats.nll.mean(), "tau2_mean": tau2.mean(),
         "tau2_sq": (tau2 * tau2).mean(), "confidence_mean": stats.confidence.mean()},
        {"tau2": tau2},
    )


VARCON = MethodSpec(
    name="varcon",
    build_loss=_build,
    compute=_compute,
    progress={"tau2_mean": "tau2", "confidence_mean": "conf"},
    description="VarCon: class centroids of the batch, KL(q || p) - log p(r|z), adaptive tau2",
)
