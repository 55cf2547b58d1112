"""What a run writes while it trains (metrics.jsonl, the experiment trackers of
``train.loggers``), and progress.

:class:`RunLogger` is the one object the training loop and the commands log through: it
appends each epoch's record to ``metrics.jsonl`` and fans every value out to the trackers
(:mod:`varcon.runtime.trackers`: TensorBoard, W&B, MLflow). Only rank 0 opens trackers (a
logger built with ``enabled=False`` is silent), so the training loop has no ``if rank == 0``
around each call.
"""

from __future__ import annotations

import json
import math
import sys
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from varcon._atomic import atomic_write_text

if TYPE_CHECKING:
    from varcon.runtime.config import Config
    from varcon.runtime.distributed import DistContext
    from varcon.runtime.trackers import Tracker

__all__ = ["Progress", "RunLogger"]


class RunLogger:
    """Appends one JSON object per line to ``metrics.jsonl`` and hands every value to the
    trackers (``trackers``: by name, as :func:`~varcon.runtime.trackers.open_trackers` opens
    them; ``None``: TensorBoard alone when ``tensorboard``, as before ``train.loggers``).

    A tracker that fails while logging is reported once and dropped: training goes on, and
    ``metrics.jsonl`` still records everything. Use as a context manager, or call
    :meth:`close`: the trackers learn whether the run ended with an error.
    """

    def __init__(self, run_dir: Path | None, enabled: bool = True, tensorboard: bool = True,
                 trackers: Mapping[str, Tracker] | None = None, *,
                 metrics_file: bool = True) -> None:
        self.enabled = enabled and run_dir is not None
        self.path = (run_dir / "metrics.jsonl"
                     if self.enabled and run_dir is not None and metrics_file else None)
        if trackers is None and self.enabled and tensorboard and run_dir is not None:
            from varcon.runtime.trackers import TrackedRun, get_tracker

            tracker = get_tracker("tensorboard").tracker
            trackers = {"tensorboard": tracker.open(TrackedRun(run_dir, run_dir.name, {}, None))}
        self.trackers: dict[str, Tracker] = dict(trackers or {}) if self.enabled else {}

    @classmethod
    def for_training(cls, cfg: Config, run_dir: Path, ctx: DistContext) -> RunLogger:
        """The logger of ``varcon pretrain``: ``metrics.jsonl`` and every tracker of
        ``train.loggers`` on rank 0, starting new tracker runs, or continuing them when
        ``cfg.resume`` is set. A tracker that cannot open stops every rank with its error."""
        from varcon.runtime.distributed import broadcast_object
        from varcon.runtime.trackers import open_trackers

        trackers: dict[str, Tracker] = {}
        failure: Exception | None = None
        if ctx.is_main:
            try:
                trackers = open_trackers(cfg, run_dir, training=True)
            except Exception as exc:  # TrackerError, an unreadable trackers.json, ...
                failure = exc
        # the other ranks stop too, rather than wait for rank 0 in the first step
        shared = broadcast_object(ctx, None if failure is None else str(failure))
        if failure is not None:
            raise failure
        if shared:
            from varcon.runtime.trackers import TrackerError

            raise TrackerError(f"rank 0: {shared}")
        return cls(run_dir, enabled=ctx.is_main, trackers=trackers)

    @classmethod
    def for_command(cls, cfg: Config, run_dir: Path, *, enabled: bool = True,
                    installed_only: bool = False) -> RunLogger:
        """The logger of a later command on a trained run (an evaluation, ``varcon
        figures``): the trackers that keep a run, continued (``metrics.jsonl`` and TensorBoard
        are left alone). ``installed_only``: see
        :func:`~varcon.runtime.trackers.open_trackers`."""
        from varcon.runtime.trackers import open_trackers

        trackers = (open_trackers(cfg, run_dir, training=False, installed_only=installed_only)
                    if enabled else {})
        return cls(run_dir, enabled=enabled, trackers=trackers, metrics_file=False)

    def _each(self, method: str, *args: Any) -> None:
        """Call ``method`` of every tracker; one that raises is warned about and dropped."""
        for name, tracker in list(self.trackers.items()):
            try:
                getattr(tracker, method)(*args)
            except Exception as exc:
                del self.trackers[name]
                warnings.warn(f"{name} stopped logging ({type(exc).__name__}: {exc}); the run "
                              "directory's files (metrics.jsonl, eval/) still record everything",
                              RuntimeWarning, stacklevel=3)

    def log_epoch(self, record: dict[str, Any]) -> None:
        """One epoch's record: a line of ``metrics.jsonl`` (non-finite numbers as ``null``),
        and its numbers as ``epoch/<key>`` for the trackers."""
        if not self.enabled:
            return
        if self.path is not None:
            clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                     for k, v in record.items()}
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(clean) + "\n")
        scalars = {k: v for k, v in record.items()
                   if isinstance(v, (int, float)) and k != "epoch"}
        self._each("log_epoch", int(record.get("epoch", 0)), scalars)

    def keep_epochs_up_to(self, epoch: int) -> None:
        """Keep only the records of epochs 1..``epoch`` in metrics.jsonl: the later ones (a
        crash between logging an epoch and checkpointing it) are about to be trained again
        by a resumed run."""
        if self.path is None or not self.path.is_file():
            return
        lines = self.path.read_text(encoding="utf-8").splitlines(keepends=True)
        kept = [line for line in lines
                if line.strip() and json.loads(line).get("epoch", 0) <= epoch]
        if len(kept) != len(lines):
            atomic_write_text(self.path, "".join(kept))

    def log_step(self, step: int, scalars: dict[str, float]) -> None:
        """Scalars of global step ``step`` (``step/<key>``)."""
        self._each("log_step", step, scalars)

    def log_evaluation(self, protocol: str, results: Mapping[str, Any]) -> None:
        """The numbers of one evaluation's results (``eval/<protocol>/...``:
        :func:`~varcon.runtime.trackers.evaluation_metrics`)."""
        if not self.trackers:
            return
        from varcon.runtime.trackers import evaluation_metrics

        metrics = evaluation_metrics(protocol, results)
        if metrics:
            self._each("log_evaluation", metrics)

    def log_figures(self, paths: Sequence[Path]) -> None:
        """PNG files, by file stem (``figures/<stem>``)."""
        if paths:
            self._each("log_figures", [Path(p) for p in paths])

    def close(self, failed: bool = False) -> None:
        """End every tracker's connection (``failed``: the run or command raised)."""
        trackers, self.trackers = self.trackers, {}
        errors = []
        for tracker in trackers.values():
            try:
                tracker.close(failed)
            except Exception as exc:  # close the others first
                errors.append(exc)
        if errors:
            raise errors[0]

    def __enter__(self) -> RunLogger:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            self.close(failed=exc_type is not None)
        except Exception as error:
            if exc_type is None:
                raise
            # the run's own error is the one to report
            warnings.warn(f"closing the trackers failed too: {error}", RuntimeWarning,
                          stacklevel=2)


class Progress:
    """A tqdm bar on a terminal, plain periodic lines otherwise (log files, CI)."""

    def __init__(self, total: int, desc: str, mode: str = "auto", enabled: bool = True,
                 line_every: int = 0) -> None:
        self.enabled = enabled and mode != "off"
        use_bar = mode == "bar" or (mode == "auto" and sys.stderr.isatty())
        self.bar = None
        self.total = total
        self.desc = desc
        self.count = 0
        self.fields: dict[str, float] = {}
        self.start = time.perf_counter()
        self.line_every = line_every or max(total // 4, 1)
        if self.enabled and use_bar:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True)

    def update(self, **fields: float) -> None:
        """One step done; ``fields`` (when given) are shown from now on (the training loop
        reads values from the device only every few steps)."""
        if not self.enabled:
            return
        self.count += 1
        if fields:
            self.fields = fields
        text = " ".join(f"{k}={v:.4g}" for k, v in self.fields.items())
        if self.bar is not None:
            if fields:
                self.bar.set_postfix_str(text, refresh=False)
            self.bar.update(1)
        elif self.count % self.line_every == 0 or self.count == self.total:
            print(f"{self.desc} [{self.count}/{self.total}] {text}", flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
