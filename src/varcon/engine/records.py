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
from torch import Tensor

from .step import StepResult

__all__ = ["EpochMeter", "format_epoch"]


class EpochMeter:
    """Sums the steps of one epoch that were not skipped; keeps per-sample values when
    ``keep_samples`` (rank 0 of an epoch that writes them)."""

    def __init__(self, keep_samples: bool) -> None:
        self.keep_samples = keep_samples
        self.sums: dict[str, float] = {}
        self.samples: dict[str, list[np.ndarray]] = {}
        self.done = 0
        self.skipped = 0

    def add(self, result: StepResult) -> None:
        if result.skipped:
            self.skipped += 1
            return
        self.done += 1
        for key, value in zip(result.keys, result.host, strict=True):
            self.sums[key] = self.sums.get(key, 0.0) + value
        if self.keep_samples:
            for key, tensor in result.samples.items():
                self.samples.setdefault(key, []).append(_to_numpy(tensor))

    def record(self, epoch: int, lr: float, epoch_time: float,
               images_per_step: int) -> dict[str, Any]:
        """The epoch's record: means over the steps done; a ``<x>_sq`` mean (of squares)
        beside ``<x>_mean`` becomes ``<x>_std``, the spread over samples."""
        record: dict[str, Any] = {
            "epoch": epoch + 1, "lr": lr, "steps": self.done, "skipped_steps": self.skipped,
            "epoch_time": epoch_time, "images_per_s": self.done * images_per_step / epoch_time,
        }
        means = {key: total / max(self.done, 1) for key, total in self.sums.items()}
        for key, value in means.items():
            stem = key.removesuffix("_sq")
            if key.endswith("_sq") and f"{stem}_mean" in means:
                record[f"{stem}_std"] = math.sqrt(max(value - means[f"{stem}_mean"] ** 2, 0))
            else:
                record[key] = value
        return record

    def write_samples(self, run_dir: Path, epoch: int) -> None:
        """Each kept per-sample value as ``RUN_DIR/<name>/epoch_<k>.npy`` (k from 1)."""
        for key, chunks in self.samples.items():
            if chunks:
                (run_dir / key).mkdir(exist_ok=True)
                np.save(run_dir / key / f"epoch_{epoch + 1}.npy", np.concatenate(chunks))


def _to_numpy(tensor: Tensor) -> np.ndarray:
    return tensor.detach().float().cpu().numpy()


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
