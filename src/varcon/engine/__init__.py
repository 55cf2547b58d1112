"""Training: the pre-training loop and its run directory.

The shared runtime (config, data building, processes, checkpoints writing, schedules) is in
:mod:`varcon.runtime`; evaluation protocols are in :mod:`varcon.evaluation`.
Submodules are imported on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "TrainingDiverged": "pretrain",
    "TrainingInterrupted": "pretrain",
    "pretrain": "pretrain",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
