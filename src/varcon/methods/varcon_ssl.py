"""``method=varcon_ssl``: VarCon with latent pseudo-classes (self-supervised), and with the
labels of the labelled images where some have one (``data.labeled_fraction``)."""

from __future__ import annotations

import math
from typing import Any

from torch import Tensor, nn

from varcon.losses import VarConSSLLoss
from varcon.losses.self_supervised import effective_rank

from .base import MethodOutput, MethodSpec
from .collapse import collapse_warnings

__all__ = ["VARCON_SSL"]


def _build(cfg: Any, num_classes: int) -> nn.Module:
    s = cfg.ssl
    if cfg.data.labels != "none" and num_classes > s.num_prototypes:
        raise ValueError(
            f"ssl.num_prototypes={s.num_prototypes} is less than the {num_classes} classes of "
            "the labelled images (each class takes one prototype): set "
            f"ssl.num_prototypes={num_classes} or more, or data.labels=none")
    return VarConSSLLoss(
        s.num_prototypes, cfg.model.head_dim, cfg.data.views, cfg.loss.temperature,
        cfg.loss.epsilon, instance_weight=s.instance_weight,
        prototype_weight=s.prototype_weight, momentum=s.momentum,
        sinkhorn_epsilon=s.sinkhorn_epsilon, sinkhorn_iterations=s.sinkhorn_iterations,
        dead_after=s.dead_after, seed=cfg.seed, queue_length=s.queue_length,
        gradient_scale=cfg.loss.gradient_scale,
        equal_shards=True)  # the engine splits every global batch evenly over the ranks


def _compute(loss_fn: nn.Module, outputs: Tensor, labels: Tensor) -> MethodOutput:
    loss, stats = loss_fn(outputs, labels, return_stats=True)
    tau2, confidence = stats["tau2"], stats["confidence"]
    at_bounds = ((confidence < 0.05) | (confidence > 0.95)).float().mean()
    return MethodOutput(
        loss,
        {"kl": stats["kl"].mean(), "nll": stats["nll"].mean(), "tau2_mean": tau2.mean(),
         "tau2_sq": (tau2 * tau2).mean(), "confidence_mean": confidence.mean(),
         "instance_nll": stats["instance_nll"].mean(),
         "instance_tau2_mean": stats["instance_tau2"].mean(),
         "marginal_entropy": stats["marginal_entropy"],
         "dead_prototypes": stats["dead_prototypes"].float(),
         "effective_rank": effective_rank(outputs), "tau2_at_bounds": at_bounds},
        {"tau2": tau2},
    )


def _validate(cfg: Any) -> list[str]:
    rows = cfg.optim.batch_size * cfg.data.views
    k, queued = cfg.ssl.num_prototypes, cfg.ssl.queue_length
    if k > rows + queued:
        plus = f", plus ssl.queue_length={queued} queued" if queued else ""
        held = (f"the {rows} embeddings of a step (optim.batch_size={cfg.optim.batch_size} x "
                f"data.views={cfg.data.views}{plus})")
        return [f"ssl.num_prototypes={k} exceeds {held}: the balanced assignment would leave "
                f"prototypes empty at every step. Set ssl.num_prototypes <= {rows + queued}, "
                f"optim.batch_size >= {math.ceil((k - queued) / cfg.data.views)}, or "
                f"ssl.queue_length >= {k - rows} (earlier embeddings, as SwAV's queue)"]
    return []


VARCON_SSL = MethodSpec(
    name="varcon_ssl", build_loss=_build, compute=_compute, labels="optional",
    validate=_validate, diagnose=collapse_warnings,
    progress={"tau2_mean": "tau2", "marginal_entropy": "H", "effective_rank": "erank"},
    description="self-supervised VarCon: pseudo-classes over running prototypes (Sinkhorn), "
                "plus VarCon with instance labels; uses the labels it is given",
)
