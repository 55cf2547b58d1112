"""TensorBoard (``train.loggers=[tensorboard]``, the default): step and epoch scalars in
``RUN_DIR/tensorboard/``, written by ``torch.utils.tensorboard``.

Only training writes here (``keeps_run`` is false): the config, evaluation results and figures
have their own files in the run directory, and a later command adds nothing to the event files.
Without the ``tensorboard`` package this tracker writes nothing, silently: ``metrics.jsonl``
still records every value.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .base import TrackedRun, Tracker
from .registry import TrackerSpec, register_tracker

__all__ = ["TensorBoardTracker"]


class TensorBoardTracker(Tracker):
    """``step/<key>`` scalars against the global step, ``epoch/<key>`` against the epoch."""

    keeps_run = False

    def __init__(self, writer: Any) -> None:
        self.writer = writer  # a SummaryWriter, or None without the tensorboard package

    @classmethod
    def open(cls, run: TrackedRun) -> TensorBoardTracker:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard missing: metrics.jsonl still records everything
            return cls(None)
        return cls(SummaryWriter(log_dir=str(run.run_dir / "tensorboard")))

    def log_step(self, step: int, scalars: Mapping[str, float]) -> None:
        if self.writer is not None:
            for key, value in scalars.items():
                self.writer.add_scalar(f"step/{key}", value, step)

    def log_epoch(self, epoch: int, scalars: Mapping[str, float]) -> None:
        if self.writer is not None:
            for key, value in scalars.items():
                self.writer.add_scalar(f"epoch/{key}", value, epoch)
            self.writer.flush()

    def close(self, failed: bool = False) -> None:
        if self.writer is not None:
            self.writer.close()


register_tracker(TrackerSpec("tensorboard", TensorBoardTracker))
