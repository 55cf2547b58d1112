"""How training stops early: on SIGTERM/SIGINT (a checkpoint at the step boundary, then
:class:`TrainingInterrupted`), or after too many non-finite losses (:class:`TrainingDiverged`).
"""

from __future__ import annotations

import signal
from types import TracebackType
from typing import Any

import torch

from varcon.runtime.distributed import DistContext, all_reduce_sum

__all__ = ["StopOnSignal", "TrainingDiverged", "TrainingInterrupted"]


class TrainingInterrupted(RuntimeError):
    """SIGTERM/SIGINT arrived; a checkpoint was saved at the step boundary."""


class TrainingDiverged(RuntimeError):
    """Too many consecutive non-finite losses."""


class StopOnSignal:
    """Within the block, SIGTERM/SIGINT set a flag instead of killing the process; the loop
    asks :meth:`requested` between steps. The previous handlers come back on exit."""

    def __init__(self, ctx: DistContext) -> None:
        self.ctx = ctx
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        self.signum = signum

    def __enter__(self) -> StopOnSignal:
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not in the main thread: leave signals alone
                pass
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    @property
    def name(self) -> str:
        return signal.Signals(self.signum or signal.SIGTERM).name

    def requested(self) -> bool:
        """Whether any rank was signalled (all ranks must stop at the same step)."""
        if not self.ctx.distributed:
            return self.signum is not None
        flag = torch.tensor([1.0 if self.signum is not None else 0.0], device=self.ctx.device)
        all_reduce_sum(self.ctx, flag)
        return bool(flag.item() > 0)
