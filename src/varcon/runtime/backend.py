"""PyTorch settings shared by training and evaluation: the autocast dtype, and process-wide
flags (determinism, cuDNN autotuning) set for a run and put back afterwards.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

__all__ = ["autocast_dtype", "torch_settings"]


def autocast_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``train.amp`` on ``device`` (None: no autocast).

    * ``off``: none. On a CPU: none for every mode (CPU autocast is not used yet).
    * ``auto``: bfloat16 where the GPU supports it, else float16 (with the GradScaler).
    * ``bf16`` / ``fp16``: that dtype; ``bf16`` on a GPU without bfloat16 support raises
      ``ValueError`` (choose ``fp16`` or ``auto`` there).
    """
    if device.type != "cuda" or amp == "off":
        return None
    if amp == "fp16":
        return torch.float16
    supported = torch.cuda.is_bf16_supported()
    if amp == "bf16" and not supported:
        raise ValueError(f"train.amp=bf16 but {torch.cuda.get_device_name(device)} has no "
                         "bfloat16 support; use train.amp=fp16 (or auto, which picks it)")
    return torch.bfloat16 if supported else torch.float16


@contextlib.contextmanager
def torch_settings(*, deterministic: bool, device: torch.device) -> Iterator[None]:
    """Within the block: deterministic algorithms (``train.deterministic``) or, on CUDA,
    cuDNN autotuning; afterwards every flag is as it was, so a library call leaves the
    process's global state as it found it."""
    saved = (torch.are_deterministic_algorithms_enabled(),
             torch.is_deterministic_algorithms_warn_only_enabled(),
             torch.backends.cudnn.benchmark)
    try:
        if deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
        elif device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        yield
    finally:
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
        torch.backends.cudnn.benchmark = saved[2]
