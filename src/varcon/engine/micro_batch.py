r"""Large batches in bounded memory: gradient caching (Gao et al., 2021) for ``train.micro_batch``.

A contrastive loss couples every row of the batch, so the batch cannot simply be split
into independent pieces. But the loss only depends on the network through the embeddings
``z = f_theta(x)`` ``[N, D]``, and by the chain rule

    dL/dtheta = sum_chunks  (dL/dz_chunk)^T  dz_chunk/dtheta

So: (1) encode the batch chunk by chunk without autograd (only ``z`` is kept), (2) evaluate
the loss once, on the whole batch's ``z`` as a leaf, and back-propagate it to ``z`` alone
(``G = dL/dz`` ``[N, D]``: every coupling between rows, through the centroids or the
denominators, is inside ``G``), (3) encode each chunk again with autograd and back-propagate
``G``'s rows of that chunk (``z_chunk.backward(G_chunk)``). The parameter gradient is the
full-batch gradient for any loss of ``z`` (whether VarCon's centroids are detached or not),
provided the network treats rows independently. Peak activation memory is one chunk's.

What differs from one forward pass over the whole batch:

* BatchNorm (in training mode) normalises each chunk by the chunk's own statistics, as
  ``N / chunk`` processes without SyncBatchNorm would. Its running statistics are updated
  once per chunk (by the first pass; the second pass's update is undone).
* Random layers (dropout, stochastic depth) draw per chunk; each chunk's second pass
  replays the random numbers of its first (the RNG state is saved and restored), so the
  re-encoded ``z`` is the one the loss saw, and the RNG stream continues as if each chunk
  had been encoded once.
* Each chunk is encoded twice: about one extra forward pass per step.

Under DDP the parameter gradients are all-reduced once per step: every chunk but the last
is back-propagated inside ``model.no_sync()``. With a GradScaler, pass the *scaled* loss to
``backward``: ``G`` and so every chunk's gradient carry the scale once.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

__all__ = ["Backward", "check_micro_batch", "encode_for_loss"]

Backward = Callable[[Tensor], None]


def check_micro_batch(micro_batch: int, per_process_batch: int, world_size: int = 1) -> None:
    """Raise ``ValueError`` unless ``micro_batch`` (images; 0 = off) divides this process's
    batch (``optim.batch_size / world_size`` images)."""
    if not micro_batch:
        return
    where = f" ({world_size} processes)" if world_size > 1 else ""
    if micro_batch > per_process_batch or per_process_batch % micro_batch:
        top = min(micro_batch, per_process_batch)  # the largest divisor <= top (bounded search)
        fit = next((d for d in range(top, max(top - 10_000, 0), -1)
                    if per_process_batch % d == 0), 1)
        raise ValueError(
            f"train.micro_batch={micro_batch} must divide each process's batch of "
            f"{per_process_batch} images (optim.batch_size / processes{where}): use "
            f"train.micro_batch={fit} (or another divisor of {per_process_batch}), or 0 for "
            "no chunking"
        )


def encode_for_loss(
    model: nn.Module,
    images: Tensor,
    chunk_rows: int = 0,
    *,
    amp_dtype: torch.dtype | None = None,
) -> tuple[Tensor, Backward]:
    """The batch's outputs for the loss, and how to back-propagate the loss through them.

    Args:
        model: the network (possibly wrapped in DDP), in training mode.
        images: ``[N, C, H, W]`` (all rows of this process's batch).
        chunk_rows: rows per chunk (``micro_batch`` images x views per image); 0 or
            ``>= N``: one ordinary forward pass.
        amp_dtype: autocast dtype (None: no autocast).

    Returns:
        ``outputs`` ``[N, D]`` and ``backward``: call ``backward(loss)`` (the scaled loss
        under a GradScaler) exactly once; it fills the parameters' ``.grad``. With chunks,
        ``outputs`` is a leaf holding no graph of the network.
    """

    def forward(x: Tensor) -> Tensor:
        with torch.autocast(images.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            return model(x)

    if not chunk_rows or chunk_rows >= len(images):
        return forward(images), _plain_backward
    if len(images) % chunk_rows:
        raise ValueError(f"{len(images)} rows do not split into chunks of {chunk_rows}")
    chunks = images.split(chunk_rows)
    rng_states = []
    with torch.no_grad():
        parts = []
        for chunk in chunks:
            rng_states.append(_get_rng(images.device))
            parts.append(forward(chunk))
    outputs = torch.cat(parts).requires_grad_()
    del parts

    def backward(loss: Tensor) -> None:
        loss.backward()  # to the outputs only: they are a leaf
        assert outputs.grad is not None, "the loss does not depend on the outputs"
        grads = outputs.grad.split(chunk_rows)
        # The first pass already updated the BatchNorm running statistics (once per chunk).
        buffers = [b.detach().clone() for b in model.buffers()]
        after_first_pass = _get_rng(images.device)
        for i, (chunk, grad, rng) in enumerate(zip(chunks, grads, rng_states, strict=True)):
            _set_rng(images.device, rng)  # replay the chunk's dropout masks
            with _no_sync(model) if i < len(chunks) - 1 else contextlib.nullcontext():
                forward(chunk).backward(grad)
        with torch.no_grad():
            for buf, saved in zip(model.buffers(), buffers, strict=True):
                buf.copy_(saved)
        _set_rng(images.device, after_first_pass)
        outputs.grad = None

    return outputs, backward


def _plain_backward(loss: Tensor) -> None:
    loss.backward()


def _no_sync(model: nn.Module) -> contextlib.AbstractContextManager[Any]:
    """DDP's ``no_sync`` (gradients accumulate locally; the last chunk's backward
    all-reduces the sum), also through a ``torch.compile`` wrapper; a no-op otherwise."""
    inner = getattr(model, "_orig_mod", model)
    if isinstance(inner, DistributedDataParallel):
        return inner.no_sync()
    return contextlib.nullcontext()


def _get_rng(device: torch.device) -> tuple[Tensor, Tensor | None]:
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return torch.get_rng_state(), cuda


def _set_rng(device: torch.device, state: tuple[Tensor, Tensor | None]) -> None:
    cpu, cuda = state
    torch.set_rng_state(cpu)
    if cuda is not None:
        torch.cuda.set_rng_state(cuda, device)
