"""Process-group set-up shared by every entry point: one code path for 1 and N processes.

``torchrun`` sets RANK / WORLD_SIZE / LOCAL_RANK (and the rendezvous address, single-
or multi-node); a plain ``python -m varcon`` has none of them and runs as a single
process without a process group. The backend is NCCL on CUDA and gloo on CPU.

A process group that already exists (a user's script that called ``init_process_group``
before ``varcon.pretrain``) is used as it is and left open: :func:`teardown` closes only the
group :func:`setup_distributed` opened. Closing and re-opening the default group within one
torchrun launch is unreliable (the rendezvous store still holds the closed group's addresses:
gloo's ``connectFullMesh`` can read them and fail with "Connection refused").
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

__all__ = ["GATHER_CHUNK", "DistContext", "all_reduce_sum", "barrier", "broadcast_object",
           "gather_strided", "setup_distributed", "teardown"]

# Rows per rank in one all-gather of :func:`gather_strided`: 16384 x 2048 float32 features are
# 128 MiB per rank, so 8 ranks hold 1 GiB of a gather on a device at once.
GATHER_CHUNK = 16384


@dataclass(frozen=True)
class DistContext:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    owns_group: bool = False  # setup_distributed opened the process group: teardown closes it

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _pick_device(requested: str, local_rank: int) -> torch.device:
    if requested == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    device = torch.device(requested)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"train.device={requested!r} but CUDA is not available here; use "
                "train.device=cpu or train.device=auto"
            )
        if device.index is None:
            device = torch.device(f"cuda:{local_rank}")
    return device


def setup_distributed(requested_device: str = "auto") -> DistContext:
    """Initialise the process group when launched by torchrun (unless one is open already);
    pick the device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = _pick_device(requested_device, local_rank)
    owns_group = False
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=backend, timeout=timedelta(minutes=30))
        owns_group = True
    if dist.is_initialized():
        rank, world_size = dist.get_rank(), dist.get_world_size()
    return DistContext(rank=rank, world_size=world_size, local_rank=local_rank, device=device,
                       owns_group=owns_group)


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        dist.barrier()


def broadcast_object(ctx: DistContext, obj: object) -> object:
    """Rank 0's ``obj`` on every rank (picklable plain data only)."""
    if not ctx.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_reduce_sum(ctx: DistContext, tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` summed over ranks, in place (unchanged with one process)."""
    if ctx.distributed:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def gather_strided(ctx: DistContext, shards: Sequence[torch.Tensor], total: int, *,
                   everywhere: bool = True, chunk: int | None = None) -> list[torch.Tensor]:
    """Rows sharded over ranks by stride, gathered back in input order on the CPU.

    Rank r holds rows r, r + W, r + 2W, ... of ``total`` (W = world size): for each tensor of
    ``shards``, ``len(range(r, total, W))`` rows of shape ``[n]`` or ``[n, D]``. A shard of
    width 0 (``[0, 0]`` from a rank that encoded nothing, or ``[n, 0]``) is read as zeros of
    the width the other ranks have. Every rank must pass the same number of tensors, with the
    same dtypes and dimensions.

    Returns, for each tensor, the ``total`` rows in input order on the CPU (exact copies):
    on every rank with ``everywhere`` (what a protocol that runs on every rank needs), else
    on rank 0 only, the other ranks getting ``[0, ...]`` (what a writer on rank 0 needs).

    Rows travel ``chunk`` (default :data:`GATHER_CHUNK`) per rank per all-gather: a device
    holds at most ``world_size * chunk`` gathered rows of a tensor (plus its own chunk) at
    once, and each gathered chunk goes to the CPU before the next; ``total x D`` never sits
    on a device whole (ImageNet-1K's 1.28M x 2048 float32 features are 10.5 GB). With one
    process the shards are returned on the CPU as they are.
    """
    world = ctx.world_size
    for t in shards:
        if t.dim() not in (1, 2):
            raise ValueError(f"gather_strided: rows of shape [n] or [n, D], got {tuple(t.shape)}")
        if t.shape[0] != len(range(ctx.rank, total, world)):
            raise ValueError(f"gather_strided: rank {ctx.rank} of {world} holds "
                             f"{t.shape[0]} rows; rows {ctx.rank}, {ctx.rank} + {world}, ... "
                             f"of {total} are {len(range(ctx.rank, total, world))}")
    if not ctx.distributed:
        return [t.cpu() for t in shards]
    chunk = int(chunk or GATHER_CHUNK)
    if chunk < 1:
        raise ValueError(f"gather_strided: chunk must be at least 1, got {chunk}")
    widths = torch.tensor([t.shape[1] if t.dim() == 2 else 0 for t in shards],
                          dtype=torch.long, device=ctx.device)
    if len(shards):
        dist.all_reduce(widths, op=dist.ReduceOp.MAX)  # an empty shard may not know its width
    shapes = [(int(w),) if t.dim() == 2 else () for t, w in zip(shards, widths.tolist(),
                                                                  strict=True)]
    keep = everywhere or ctx.is_main
    outs = [torch.empty((total if keep else 0, *shape), dtype=t.dtype)
            for t, shape in zip(shards, shapes, strict=True)]
    per_rank = len(range(0, total, world))  # rank 0 holds the most rows
    for start in range(0, per_rank, chunk):
        # shard rows [start, start + chunk) of every rank: input rows [lo, hi), contiguous
        lo, hi = start * world, min((start + chunk) * world, total)
        for t, shape, out in zip(shards, shapes, outs, strict=True):
            mine = t[start:start + chunk]
            send = torch.zeros((chunk, *shape), dtype=t.dtype, device=ctx.device)
            if mine.numel():
                send[:len(mine)] = mine.to(ctx.device)
            parts = [torch.empty_like(send) for _ in range(world)]
            dist.all_gather(parts, send)
            if keep:
                for r, part in enumerate(parts):
                    out[lo + r:hi:world] = part[:len(range(lo + r, hi, world))].cpu()
            del parts, send
    return outs


def teardown(ctx: DistContext) -> None:
    """Close the process group if :func:`setup_distributed` opened it (a caller's stays)."""
    if ctx.owns_group and dist.is_initialized():
        dist.destroy_process_group()
