"""Weights & Biases (``train.loggers=[..., wandb]``; ``pip install "varcon[wandb]"``).

One W&B run per varcon run: the config as ``run.config`` (nested, as in ``config.yaml``),
``step/<key>`` rows against ``global_step`` and ``epoch/<key>`` rows against ``epoch``
(``define_metric``), evaluation results as summary values (``eval/linear/top1``) and figures as
``wandb.Image`` (``figures/<stem>``). A resumed run and later commands continue it
(``wandb.init(id=..., resume="allow")``) with the id kept in ``trackers.json``.

W&B's own environment variables apply: ``WANDB_MODE=offline`` logs to files only (upload later
with ``wandb sync``), ``WANDB_DIR`` moves its files (default: the run directory's ``wandb/``),
``WANDB_PROJECT`` and ``WANDB_ENTITY`` stand in for ``tracking.wandb_project`` and
``tracking.wandb_entity`` when those are not set. ``wandb`` is imported when this tracker opens.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .base import TrackedRun, Tracker, TrackerError, metric_name
from .registry import TrackerSpec, register_tracker

__all__ = ["DEFAULT_PROJECT", "WandbTracker"]

DEFAULT_PROJECT = "varcon"


class WandbTracker(Tracker):
    """A W&B run (``wandb.sdk.wandb_run.Run``) that varcon logs to."""

    def __init__(self, wandb: Any, run: Any) -> None:
        self.wandb = wandb  # the module, imported by open()
        self.run = run

    @classmethod
    def open(cls, run: TrackedRun) -> WandbTracker:
        import wandb

        saved = run.saved or {}
        options = run.options
        kwargs: dict[str, Any] = {
            # a continued run stays in the project it was started in
            "project": (saved.get("project") or options.wandb_project
                        or os.environ.get("WANDB_PROJECT") or DEFAULT_PROJECT),
            "entity": saved.get("entity") or options.wandb_entity,  # None: W&B's default
        }
        if not os.environ.get("WANDB_DIR"):
            kwargs["dir"] = str(run.run_dir)  # offline runs live beside the run they record
        if saved.get("id"):
            kwargs.update(id=saved["id"], resume="allow")
        else:
            kwargs.update(name=run.name, config=run.config)
        try:
            wb_run = wandb.init(**kwargs)
        except Exception as exc:  # no API key, no network, a bad entity: W&B's own errors
            raise TrackerError(
                f"train.loggers: W&B could not start its run ({type(exc).__name__}: {exc}); log "
                "in with `wandb login`, or log offline with WANDB_MODE=offline and upload later "
                "with `wandb sync`"
            ) from exc
        # each kind of scalar against its own x axis (W&B's _step counts rows, whatever kind)
        wb_run.define_metric("global_step")
        wb_run.define_metric("step/*", step_metric="global_step")
        wb_run.define_metric("epoch")
        wb_run.define_metric("epoch/*", step_metric="epoch")
        return cls(wandb, wb_run)

    def state(self) -> dict[str, Any]:
        return {"id": self.run.id, "project": self.run.project,
                "entity": self.run.entity or None, "url": self.run.url}

    def log_step(self, step: int, scalars: Mapping[str, float]) -> None:
        self.run.log({**{metric_name("step", k): v for k, v in scalars.items()},
                      "global_step": step})

    def log_epoch(self, epoch: int, scalars: Mapping[str, float]) -> None:
        self.run.log({**{metric_name("epoch", k): v for k, v in scalars.items()},
                      "epoch": epoch})

    def log_evaluation(self, metrics: Mapping[str, float]) -> None:
        self.run.summary.update(dict(metrics))

    def log_figures(self, paths: Sequence[Path]) -> None:
        if paths:
            self.run.log({metric_name("figures", Path(p).stem): self.wandb.Image(str(p))
                          for p in paths})

    def close(self, failed: bool = False) -> None:
        self.run.finish(exit_code=1 if failed else 0)


register_tracker(TrackerSpec("wandb", WandbTracker, package="wandb",
                             install='pip install "varcon[wandb]"'))
