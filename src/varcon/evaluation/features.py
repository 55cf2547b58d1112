"""Feature extraction over a data loader."""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["extract_features", "owning_module"]


def owning_module(fn: Callable[..., Any]) -> nn.Module | None:
    """The ``nn.Module`` behind ``fn``: ``fn`` itself or the owner of a bound method, else None."""
    if isinstance(fn, nn.Module):
        return fn
    owner = getattr(fn, "__self__", None) if inspect.ismethod(fn) else None
    return owner if isinstance(owner, nn.Module) else None


@contextlib.contextmanager
def _eval_mode(module: nn.Module | None) -> Iterator[None]:
    """Put ``module`` (all sub-modules) in eval mode; restore each sub-module's flag after."""
    if module is None:
        yield
        return
    saved = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for m, flag in saved:
            m.training = flag


def extract_features(
    fn: Callable[[torch.Tensor], torch.Tensor],
    loader: Iterable[tuple[Any, Any]],
    device: str | torch.device = "cpu",
    normalize: bool = False,
    amp_dtype: torch.dtype | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run ``fn`` over every ``(images, labels)`` batch of ``loader`` without gradients.

    ``images`` ``[B, C, H, W]`` are moved to ``device``; ``fn`` returns ``[B, D]``.
    If ``fn`` is an ``nn.Module`` or a bound method of one (e.g. ``net.encode``), the module
    is put in eval mode for the pass and every sub-module's previous mode is restored after.
    ``amp_dtype`` (e.g. ``torch.float16`` on CUDA, ``torch.bfloat16``) enables
    ``torch.autocast`` on ``device``'s type; ``None`` disables it. ``normalize`` L2-normalises
    each feature row.

    Returns ``(features, labels)``: CPU ``float32`` ``[N, D]`` and CPU ``int64`` ``[N]``.
    Raises ``ValueError`` if the loader is empty or a batch's sizes disagree.
    """
    device = torch.device(device)
    feats: list[torch.Tensor] = []
    labels: list[torch.Tensor] = []
    autocast = (
        torch.autocast(device_type=device.type, dtype=amp_dtype)
        if amp_dtype is not None
        else contextlib.nullcontext()
    )
    non_blocking = device.type == "cuda"
    with _eval_mode(owning_module(fn)), torch.no_grad():
        for images, targets in loader:
            images = images.to(device, non_blocking=non_blocking)
            with autocast:
                out = fn(images)
            out = out.float().reshape(out.shape[0], -1)
            if normalize:
                out = F.normalize(out, dim=1)
            y = torch.as_tensor(targets).reshape(-1).long()
            if y.numel() != out.shape[0]:
                raise ValueError(
                    f"batch has {out.shape[0]} feature rows but {y.numel()} labels"
                )
            feats.append(out.cpu())
            labels.append(y.cpu())
    if not feats:
        raise ValueError("extract_features: the loader yielded no batches")
    return torch.cat(feats), torch.cat(labels)
