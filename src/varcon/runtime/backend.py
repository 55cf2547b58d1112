"""PyTorch settings shared by training and evaluation: the autocast dtype and its gradient
scaler, and process-wide flags (determinism, cuDNN autotuning) set for a run and put back
afterwards.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

__all__ = ["autocast_dtype", "grad_scaler", "torch_settings"]


def autocast_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``train.amp`` on ``device`` (None: no autocast).

    * ``off``: none, on every device.
    * ``auto``: on a GPU, bfloat16 where it is supported, else float16 (with the
      GradScaler); on a CPU none (CPU autocast is faster only on some CPUs: opt in with
      ``bf16``).
    * ``bf16``: bfloat16. On a GPU without bfloat16 support this raises ``ValueError``
      (choose ``fp16`` or ``auto`` there). On a CPU, PyTorch's CPU autocast: faster than
      float32 where the CPU has native bfloat16 arithmetic (AVX512-BF16 or AMX: Intel Xeon
      Sapphire Rapids and later, AMD Zen 4 and later), emulated and slower elsewhere.
    * ``fp16``: float16, with the GradScaler (:func:`grad_scaler`), on a GPU or a CPU (CPU
      float16 is native only with AMX-FP16, Granite Rapids; elsewhere it is emulated:
      mainly for testing the fp16 path without a GPU).
    * Other devices (e.g. ``mps``): none.
    """
    if amp == "off":
        return None
    if device.type == "cpu":
        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)
    if device.type != "cuda":
        return None
    if amp == "fp16":
        return torch.float16
    supported = torch.cuda.is_bf16_supported()
    if amp == "bf16" and not supported:
        raise ValueError(f"train.amp=bf16 but {torch.cuda.get_device_name(device)} has no "
                         "bfloat16 support; use train.amp=fp16 (or auto, which picks it)")
    return torch.bfloat16 if supported else torch.float16


def grad_scaler(amp_dtype: torch.dtype | None, device: torch.device) -> torch.amp.GradScaler:
    """The gradient scaler for training under ``amp_dtype`` on ``device``: enabled for
    float16 only (bfloat16 has float32's range), for ``device``'s type (``"cpu"`` or
    ``"cuda"``: a CUDA scaler on a CPU would disable itself with a warning). A disabled
    scaler's ``scale``, ``step`` and ``update`` are plain ``loss`` / ``optimizer.step()``
    / no-op."""
    kind = device.type if device.type in ("cpu", "cuda") else "cuda"
    return torch.amp.GradScaler(kind, enabled=amp_dtype == torch.float16)


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
