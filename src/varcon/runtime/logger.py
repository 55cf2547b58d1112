"""What a run writes while it trains: metrics.jsonl, TensorBoard events, progress.

Only rank 0 creates one of these with ``enabled=True``; other ranks get silent ones,
so the training loop has no ``if rank == 0`` around each call.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any

from varcon._atomic import atomic_write_text

__all__ = ["Progress", "RunLogger"]


class RunLogger:
    """Appends one JSON object per line to ``metrics.jsonl``; mirrors scalars to
    TensorBoard (``torch.utils.tensorboard``) when it is installed."""

    def __init__(self, run_dir: Path | None, enabled: bool = True, tensorboard: bool = True):
        self.enabled = enabled and run_dir is not None
        self.path = run_dir / "metrics.jsonl" if self.enabled and run_dir else None
        self.tb = None
        if self.enabled and tensorboard and run_dir is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard missing: metrics.jsonl still records everything
                pass
            else:
                self.tb = SummaryWriter(log_dir=str(run_dir / "tensorboard"))

    def log_epoch(self, record: dict[str, Any]) -> None:
        if not self.enabled or self.path is None:
            return
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                 for k, v in record.items()}
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(clean) + "\n")
        if self.tb is not None:
            step = int(record.get("epoch", 0))
            for key, value in record.items():
                if isinstance(value, (int, float)) and key != "epoch" and value is not None:
                    self.tb.add_scalar(f"epoch/{key}", value, step)
            self.tb.flush()

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
        if self.tb is not None:
            for key, value in scalars.items():
                self.tb.add_scalar(f"step/{key}", value, step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


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
