"""The epoch record: step values summed over an epoch, per-sample values kept for files.

``metrics.jsonl`` gets one record per epoch: ``epoch``, ``lr``, ``steps``, ``skipped_steps``,
``epoch_time``, ``images_per_s``, the mean ``loss`` and the mean of each statistic the method
reports (VarCon: ``kl``, ``nll``, ``tau2_mean``, ``tau2_std``, ``confidence_mean``), and
``val_knn_top1`` with ``train.eval_every``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .signals import TrainingDiverged
from .step import StepResult

__all__ = ["EpochMeter", "StepReader", "format_epoch"]


class EpochMeter:
    """Sums the steps of one epoch on the device (skipped steps add nothing), and keeps
    per-sample values when ``keep_samples`` (rank 0 of an epoch that writes them). Nothing
    comes to the host before :meth:`record`."""

    def __init__(self, keep_samples: bool) -> None:
        self.keep_samples = keep_samples
        self.keys: tuple[str, ...] = ()
        self.sums: Tensor | None = None  # float64 [1 + S]: exact sums of the float32 values
        self.done: Tensor | None = None  # int64: steps not skipped
        self.steps = 0
        self.samples: dict[str, list[Tensor]] = {}
        self.sample_kept: list[Tensor] = []

    def add(self, result: StepResult) -> None:
        good = ~result.bad
        if self.sums is None or self.done is None:
            self.keys = result.keys
            self.sums = torch.zeros(len(result.keys), dtype=torch.float64,
                                    device=result.values.device)
            self.done = torch.zeros((), dtype=torch.int64, device=result.values.device)
        self.sums += torch.where(good, result.values.double(), 0.0)
        self.done += good
        self.steps += 1
        if self.keep_samples:
            for key, tensor in result.samples.items():
                self.samples.setdefault(key, []).append(tensor.detach().float())
            self.sample_kept.append(good)

    def record(self, epoch: int, lr: float, epoch_time: float,
               images_per_step: int) -> dict[str, Any]:
        """The epoch's record: means over the steps done; a ``<x>_sq`` mean (of squares)
        beside ``<x>_mean`` becomes ``<x>_std``, the spread over samples."""
        done, totals = 0, []
        if self.sums is not None and self.done is not None:
            host = torch.cat([self.done.double()[None], self.sums]).tolist()
            done, totals = int(host[0]), host[1:]
        record: dict[str, Any] = {
            "epoch": epoch + 1, "lr": lr, "steps": done, "skipped_steps": self.steps - done,
            "epoch_time": epoch_time, "images_per_s": done * images_per_step / epoch_time,
        }
        means = {key: total / max(done, 1) for key, total in zip(self.keys, totals, strict=True)}
        for key, value in means.items():
            stem = key.removesuffix("_sq")
            if key.endswith("_sq") and f"{stem}_mean" in means:
                record[f"{stem}_std"] = math.sqrt(max(value - means[f"{stem}_mean"] ** 2, 0))
            else:
                record[key] = value
        return record

    def write_samples(self, run_dir: Path, epoch: int) -> None:
        """Each kept per-sample value of the steps not skipped as
        ``RUN_DIR/<name>/epoch_<k>.npy`` (k from 1)."""
        if not self.sample_kept:
            return
        kept = torch.stack(self.sample_kept).tolist()
        for key, chunks in self.samples.items():
            good = [chunk for chunk, keep in zip(chunks, kept, strict=True) if keep]
            if good:
                (run_dir / key).mkdir(exist_ok=True)
                np.save(run_dir / key / f"epoch_{epoch + 1}.npy", torch.cat(good).cpu().numpy())


class StepReader:
    """What the host learns of the steps, read every ``every`` steps in one synchronisation:
    the steps' flags (skipped steps are reported, and too many in a row stop training), and
    the last step's values (progress bar, TensorBoard). Between reads the host only queues.

    ``stop_seen``: with several processes, whether some rank asked to stop by the last read.
    """

    def __init__(self, every: int, limit: int, verbose: bool) -> None:
        self.every, self.limit, self.verbose = every, limit, verbose
        self.consecutive = 0  # skipped steps in a row, across epochs
        self.pending: list[tuple[int, int, Tensor]] = []  # (epoch, batch, flags)
        self.stop_seen = False

    def due(self, global_step: int, last_of_epoch: bool) -> bool:
        return last_of_epoch or global_step % self.every == 0

    def add(self, epoch: int, batch: int, result: StepResult) -> None:
        self.pending.append((epoch, batch, result.flags))

    def read(self, result: StepResult, last_good_checkpoint: Path, lr: float) -> dict[str, float]:
        """Flags of the steps since the last read and ``result``'s values (the last step),
        in one transfer. Returns the last step's values by key; ``"skipped"``: 1.0 when that
        step was skipped. Raises :class:`TrainingDiverged` at the step where ``limit``
        skipped steps in a row were reached."""
        flags = torch.stack([f for _, _, f in self.pending])
        host = torch.cat([flags.flatten(), result.values]).tolist()
        n = len(self.pending)
        for (epoch, batch, _), (bad, stop) in zip(self.pending, zip(host[0:2 * n:2],
                                                  host[1:2 * n:2], strict=True), strict=True):
            self.stop_seen = self.stop_seen or stop > 0
            if not bad:
                self.consecutive = 0
                continue
            self.consecutive += 1
            if self.verbose:
                print(f"warning: non-finite loss at epoch {epoch + 1}, batch {batch}: step "
                      "skipped", flush=True)
            if self.consecutive >= self.limit:
                raise TrainingDiverged(
                    f"{self.consecutive} consecutive non-finite losses (last at epoch "
                    f"{epoch + 1}, batch {batch}). Likely causes: a learning rate too high for "
                    f"this batch size (optim.lr={lr}), fp16 overflow (try train.amp=bf16 or "
                    "train.amp=off), or corrupt input data. Last good checkpoint: "
                    f"{last_good_checkpoint if last_good_checkpoint.exists() else 'none'}"
                )
        last_bad = host[2 * n - 2] > 0
        self.pending.clear()
        values = dict(zip(result.keys, host[2 * n:], strict=True))
        values["skipped"] = float(last_bad)
        return values


def format_epoch(record: dict[str, Any]) -> str:
    """One line for the terminal: ``epoch 3 | loss 1.2 | ... | 950 img/s``."""
    parts = [f"epoch {record['epoch']}"]
    for key in ("loss", "kl", "nll", "tau2_mean", "tau2_std", "confidence_mean", "val_knn_top1",
                "lr"):
        if key in record:
            parts.append(f"{key} {record[key]:.4g}")
    parts.append(f"{record['images_per_s']:.0f} img/s")
    if record["skipped_steps"]:
        parts.append(f"skipped {record['skipped_steps']}")
    return " | ".join(parts)
