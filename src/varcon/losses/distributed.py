"""Gathering a batch across processes for losses that need the global batch.

Every rank computes the loss over the concatenation of all ranks' rows. The other
ranks' rows are gathered without autograd; the local rows keep theirs. Because each
rank evaluates the *whole* loss, the gradient it computes for its own rows is the
exact partial derivative of the global loss with respect to them. DDP then averages
parameter gradients over the W ranks, so the local rows' gradient is multiplied by W
beforehand (``gradient_scale="exact"``): the averaged gradient equals the gradient of
the loss on the concatenated batch, as one process would compute it.

``gradient_scale="per_rank"`` skips that factor and reproduces the authors' multi-GPU
code, whose effective loss gradient is 1/W of the exact one.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from .functional import check_inputs

__all__ = ["GRADIENT_SCALES", "check_gradient_scale", "gather_batch", "is_distributed"]

GRADIENT_SCALES = ("exact", "per_rank")


def check_gradient_scale(gradient_scale: str) -> None:
    if gradient_scale not in GRADIENT_SCALES:
        raise ValueError(f"gradient_scale must be one of {GRADIENT_SCALES}, got {gradient_scale!r}")


def is_distributed() -> bool:
    """True when a process group with more than one rank is initialised."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class _ScaleGrad(torch.autograd.Function):
    """Identity in the forward pass; multiplies the incoming gradient by ``scale``."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, scale: float) -> Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return grad * ctx.scale, None


def _all_gather_rows(x: Tensor, sizes: list[int]) -> list[Tensor]:
    """All-gather tensors whose first dimension differs between ranks (pad, gather, trim)."""
    max_rows = max(sizes)
    x = x.detach()
    if x.shape[0] < max_rows:
        pad = x.new_zeros((max_rows - x.shape[0], *x.shape[1:]))
        x = torch.cat([x, pad])
    buffers = [torch.empty_like(x) for _ in sizes]
    dist.all_gather(buffers, x.contiguous())
    return [buf[:rows] for buf, rows in zip(buffers, sizes, strict=True)]


def gather_batch(
    features: Tensor,
    labels: Tensor,
    gradient_scale: str = "exact",
    *,
    num_classes: int | None = None,
    equal_shards: bool = False,
) -> tuple[Tensor, Tensor]:
    """Concatenate ``features`` [n_r, D] and ``labels`` [n_r] of all ranks, in rank order.

    Ranks may hold different numbers of rows (one extra small all-gather exchanges the
    sizes, and the host reads them: a synchronisation on a GPU). ``equal_shards=True``
    promises that every rank holds as many rows as this one (varcon's engine guarantees
    it), which needs neither. The result keeps autograd only through this rank's rows, scaled as
    described in the module docstring. Without an initialised multi-rank process
    group the inputs are returned unchanged. Before any collective the local inputs
    are validated (``ValueError``, as in the losses; an empty local batch is allowed),
    so one rank's bad input fails there instead of desynchronising the others.

    Returns:
        features [N_global, D], labels [N_global].
    """
    check_gradient_scale(gradient_scale)
    if not is_distributed():
        return features, labels
    check_inputs(features, labels, num_classes, allow_empty=True)
    world, rank = dist.get_world_size(), dist.get_rank()
    if equal_shards:
        sizes = [features.shape[0]] * world
    else:
        size = torch.tensor([features.shape[0]], dtype=torch.long, device=features.device)
        all_sizes = [torch.zeros_like(size) for _ in range(world)]
        dist.all_gather(all_sizes, size)
        sizes = [int(s.item()) for s in all_sizes]

    feature_parts = _all_gather_rows(features, sizes)
    label_parts = _all_gather_rows(labels.to(features.device), sizes)
    local = features
    if gradient_scale == "exact" and features.requires_grad:
        local = _ScaleGrad.apply(features, float(world))
    feature_parts[rank] = local
    label_parts[rank] = labels.to(features.device)
    return torch.cat(feature_parts), torch.cat(label_parts)
