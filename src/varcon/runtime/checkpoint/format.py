"""Writing checkpoints that survive crashes (reading them: :mod:`varcon.models.checkpoint`).

* Written to a temporary file in the same directory, flushed to disk, then renamed
  over the target (``os.replace`` is atomic): a crash or ``kill -9`` at any moment
  leaves either the previous checkpoint or the new one, never a torn file.
* Hold only tensors and plain data (numbers, strings, lists, dicts; the config as a
  dict), so they load with ``torch.load(..., weights_only=True)``: a file that would
  need arbitrary unpickling (e.g. one crafted to run code) is refused.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from varcon._atomic import atomic_path

__all__ = ["FORMAT_VERSION", "atomic_save", "capture_rng_state", "restore_rng_state"]

FORMAT_VERSION = 1


def atomic_save(obj: dict[str, Any], path: str | Path) -> None:
    """``torch.save`` to ``path`` atomically (tmp file + fsync + rename)."""
    with atomic_path(path, fsync=True) as tmp:
        torch.save(obj, tmp)


def capture_rng_state() -> dict[str, Any]:
    """Python, NumPy and torch (CPU and CUDA) RNG states as weights_only-safe data."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "kind": np_state[0],
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    npy = state["numpy"]
    np.random.set_state(
        (npy["kind"], npy["keys"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"],
         npy["cached_gaussian"])
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
