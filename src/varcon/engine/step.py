"""One training step: a batch in, the loss and the method's statistics out (device tensors).

The step knows no method by name: the run's :class:`~varcon.methods.MethodSpec` computes the
loss and its statistics from the head's outputs. A non-finite loss skips the step on every
rank alike (DDP would hang otherwise) and undoes what its forward pass wrote into the
network's and the loss's buffers (BatchNorm running statistics, class prototypes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from varcon.runtime.distributed import all_reduce_sum

from .micro_batch import encode_for_loss
from .state import RunState

__all__ = ["StepResult", "train_step"]


@dataclass
class StepResult:
    """``values`` ``[1 + S]`` on the device: the loss, then the method's S statistics, named
    by ``keys``; ``host``: the same values as floats (read once, for the skip decision);
    ``samples``: per-sample tensors (VarCon's tau2); ``skipped``: the loss was non-finite
    on some rank and no update was made."""

    values: Tensor
    keys: tuple[str, ...]
    host: list[float]
    samples: dict[str, Tensor]
    skipped: bool


def train_step(run: RunState, model: nn.Module, images: Tensor, labels: Tensor) -> StepResult:
    """Forward, loss and (unless the loss is non-finite) backward and optimiser step on one
    batch: ``images`` ``[B, V, C, H, W]`` (V views) or ``[B, C, H, W]``, ``labels`` ``[B]``."""
    cfg, ctx = run.cfg, run.ctx
    images = run.train_set.finish(images.to(ctx.device, non_blocking=True))
    labels = labels.to(ctx.device, non_blocking=True)
    views = images.shape[1] if images.dim() == 5 else 1  # rows per image
    if images.dim() == 5:  # [B, V, C, H, W] -> B*V rows, labels repeated per view
        labels = labels.repeat_interleave(images.shape[1])
        images = images.flatten(0, 1)
    images = images.contiguous(memory_format=run.memory_format)

    # A skipped step must not keep what its forward pass wrote into the buffers.
    stateful = [*run.net.buffers(), *run.loss_fn.buffers()]
    saved_buffers = [b.detach().clone() for b in stateful]
    # train.micro_batch: encoded in chunks without activations, back-propagated chunk by
    # chunk after the loss (gradient caching, engine/micro_batch.py)
    outputs, backward = encode_for_loss(model, images, cfg.train.micro_batch * views,
                                        amp_dtype=run.amp_dtype)
    out = run.method.compute(run.loss_fn, outputs, labels)
    values = torch.stack([out.loss.detach().float(), *(v.float() for v in out.stats.values())])
    keys = ("loss", *out.stats)

    # One host-device synchronisation per step: the loss and the statistics come back
    # together (plus, with several processes, how many ranks saw a non-finite loss).
    read = values
    if ctx.distributed:
        bad = (~torch.isfinite(values[:1])).float()
        read = torch.cat([values, all_reduce_sum(ctx, bad)])
    host = read.tolist()
    if not math.isfinite(host[0]) or (ctx.distributed and host[-1] > 0):
        run.optimizer.zero_grad(set_to_none=True)
        with torch.no_grad():
            for buf, saved in zip(stateful, saved_buffers, strict=True):
                buf.copy_(saved)
        return StepResult(values, keys, host[:len(keys)], out.samples, skipped=True)
    run.optimizer.zero_grad(set_to_none=True)
    backward(run.scaler.scale(out.loss))
    run.scaler.step(run.optimizer)
    run.scaler.update()
    return StepResult(values, keys, host[:len(keys)], out.samples, skipped=False)
