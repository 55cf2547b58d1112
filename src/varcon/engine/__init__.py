"""Training and evaluation engine: config, pre-training loop, linear probe, checkpoints.

Submodules are imported on first use, so reading a config does not import the models.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Config": "config",
    "ConfigError": "config",
    "load_config": "config",
    "TrainingDiverged": "pretrain",
    "TrainingInterrupted": "pretrain",
    "pretrain": "pretrain",
    "linear_from_checkpoint": "linear",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
