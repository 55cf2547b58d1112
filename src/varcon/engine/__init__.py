"""Training: the pre-training loop (:mod:`.pretrain`), read top to bottom; the run state
(:mod:`.state`), one step (:mod:`.step`), the epoch record (:mod:`.records`), early stops
(:mod:`.signals`) and gradient caching (:mod:`.micro_batch`).

Train with ``from varcon.engine.pretrain import pretrain`` (the sub-module and the function
share the name, so the package does not re-export the function). The shared runtime
(config, data building, processes, checkpoints, schedules) is :mod:`varcon.runtime`;
evaluation protocols are in :mod:`varcon.evaluation`. Sub-modules are imported on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "TrainingDiverged": "signals",
    "TrainingInterrupted": "signals",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
