"""How training stops early: on SIGTERM/SIGINT (a checkpoint at the step boundary, then
:class:`TrainingInterrupted`), or after too many non-finite losses (:class:`TrainingDiverged`).
"""

from __future__ import annotations

import signal
from types import TracebackType
from typing import Any

__all__ = ["StopOnSignal", "TrainingDiverged", "TrainingInterrupted"]


class TrainingInterrupted(RuntimeError):
    """SIGTERM/SIGINT arrived; a checkpoint was saved at the step boundary."""


class TrainingDiverged(RuntimeError):
    """Too many consecutive non-finite losses."""


class StopOnSignal:
    """Within the block, SIGTERM/SIGINT set a flag instead of killing the process; the loop
    reads :attr:`signalled` between steps. The previous handlers come back on exit."""

    def __init__(self) -> None:
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

    @property
    def signalled(self) -> bool:
        """Whether this process received SIGTERM/SIGINT (the loop all-reduces it with the
        step's own flags when there are several processes: :mod:`varcon.engine.step`)."""
        return self.signum is not None
