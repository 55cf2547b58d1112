"""Pre-training (VarCon, SupCon, cross-entropy, any registered method), read top to bottom.

:func:`pretrain` builds the run (:mod:`.state`), resumes it, trains epoch by epoch
(:func:`train_one_epoch`, one :func:`~varcon.engine.step.train_step` per batch), writes one
record and one checkpoint per epoch, then evaluates the encoder (kNN, clustering, linear
probe: :mod:`varcon.evaluation`). One code path serves 1 process and N (``torchrun``),
CPU and GPU.
"""

from __future__ import annotations

import time
import warnings
from typing import Any

from torch import nn

from varcon.evaluation.commands import evaluate_after_pretrain, online_knn
from varcon.evaluation.session import EvalSession
from varcon.methods import TrainingWarning
from varcon.runtime.backend import torch_settings
from varcon.runtime.config import Config
from varcon.runtime.distributed import DistContext, barrier, setup_distributed, teardown
from varcon.runtime.logger import Progress, RunLogger

from .records import EpochMeter, StepReader, format_epoch
from .signals import StopOnSignal, TrainingDiverged, TrainingInterrupted
from .state import (
    RunState,
    build_loss,
    build_run_state,
    resume,
    seed_everything,
    wrap_for_training,
)
from .step import train_step

# Statistics of the last epoch that the summary shows: they need no labels.
LABEL_FREE_KEYS = ("effective_rank", "marginal_entropy", "dead_prototypes")

__all__ = ["TrainingDiverged", "TrainingInterrupted", "build_loss", "pretrain",
           "seed_everything", "train_one_epoch"]


def pretrain(cfg: Config) -> dict[str, Any]:
    """Run pre-training (and, if ``cfg.linear.run_after_pretrain``, kNN, clustering and the
    linear probe). Returns a summary dict (rank 0 holds the full one). Process-wide torch
    flags (``train.deterministic``, cuDNN autotuning) are restored on return."""
    ctx = setup_distributed(cfg.train.device)
    try:
        with torch_settings(deterministic=cfg.train.deterministic, device=ctx.device):
            summary = _pretrain(cfg, ctx)
        # no rank closes its connections while another still uses them (gloo can abort then)
        barrier(ctx)
        return summary
    finally:
        teardown(ctx)


def _pretrain(cfg: Config, ctx: DistContext) -> dict[str, Any]:
    run = build_run_state(cfg, ctx)
    start_epoch, start_step = resume(run)
    model = wrap_for_training(run)
    # metrics.jsonl and the trackers of train.loggers (rank 0), open through the evaluation
    # that ends the run, so that its results reach the same tracker runs
    with RunLogger.for_training(cfg, run.run_dir, ctx) as logger:
        if cfg.resume:  # records of epochs after the checkpoint are about to be trained again
            logger.keep_epochs_up_to(start_epoch)
        return _train_and_evaluate(run, model, start_epoch, start_step, logger)


def _train_and_evaluate(run: RunState, model: nn.Module, start_epoch: int, start_step: int,
                        logger: RunLogger) -> dict[str, Any]:
    cfg, ctx = run.cfg, run.ctx
    # Evaluation of this network (validation every train.eval_every epochs, then the final
    # kNN, clustering and probe): its splits are loaded once, on first use.
    evaluation = EvalSession.from_network(cfg, run.net, run.data, ctx, run.run_dir / "eval",
                                          run.last_checkpoint)
    # the host reads the device every train.log_every steps (every 10 without logging)
    reader = StepReader(cfg.train.log_every or 10, cfg.train.max_nonfinite_steps, ctx.is_main)
    last_record: dict[str, Any] = {}
    with StopOnSignal() as stop:
        for epoch in range(start_epoch, cfg.optim.epochs):
            first_step = start_step if epoch == start_epoch else 0
            record = train_one_epoch(run, model, epoch, first_step, stop, logger, reader)
            if cfg.train.eval_every and (epoch + 1) % cfg.train.eval_every == 0:
                # validation during pre-training: the encoder as it is now, kNN on test
                record.update(online_knn(evaluation))
            logger.log_epoch(record)
            if ctx.is_main:  # signs of failure the method reads in its statistics
                for message in run.method.warnings(cfg, record):
                    # explicit location: the message is about the run, not a code line
                    warnings.warn_explicit(f"epoch {epoch + 1}: {message}",
                                           TrainingWarning, "varcon pretrain", 0)
            last_record = record
            if ctx.is_main:
                print(format_epoch(record), flush=True)
            path = run.save("last.pt", epoch + 1, 0)
            if cfg.train.save_every and (epoch + 1) % cfg.train.save_every == 0:
                run.save(f"epoch_{epoch + 1}.pt", epoch + 1, 0)
            barrier(ctx)
            if _stop_now(stop, reader, ctx) and epoch + 1 < cfg.optim.epochs:
                raise TrainingInterrupted(
                    f"received {stop.name}: saved {path} at the end of epoch {epoch + 1}; "
                    f"continue with `varcon pretrain --resume {run.run_dir}`")

    summary: dict[str, Any] = {"run_dir": str(run.run_dir), "epochs": cfg.optim.epochs,
                               "method": cfg.method, "dataset": cfg.data.dataset}
    # label-free diagnostics of the last epoch (self-supervised methods report them)
    summary.update({k: last_record[k] for k in LABEL_FREE_KEYS if k in last_record})
    if cfg.linear.run_after_pretrain:
        summary.update(evaluate_after_pretrain(evaluation, on_result=logger.log_evaluation))
    return summary


def train_one_epoch(run: RunState, model: nn.Module, epoch: int, first_step: int,
                    stop: StopOnSignal, logger: RunLogger, reader: StepReader) -> dict[str, Any]:
    """Train epoch ``epoch`` (0-based) from batch ``first_step``; returns its record and
    writes its per-sample files (tau2) every ``train.tau2_every`` epochs. The host reads
    the device only every ``train.log_every`` steps (``reader``) and at the epoch's end."""
    cfg, ctx = run.cfg, run.ctx
    model.train()
    run.sampler.set_epoch(epoch, first_step)
    every = cfg.train.tau2_every
    meter = EpochMeter(keep_samples=ctx.is_main and every > 0 and (epoch + 1) % every == 0)
    lr = run.schedule(epoch * run.steps_per_epoch + first_step)
    progress = Progress(run.steps_per_epoch - first_step,
                        f"epoch {epoch + 1}/{cfg.optim.epochs}", mode=cfg.train.progress,
                        enabled=ctx.is_main)
    t0 = time.perf_counter()
    for step, (images, labels) in enumerate(run.loader, start=first_step):
        if step >= run.steps_per_epoch:
            break
        global_step = epoch * run.steps_per_epoch + step
        lr = run.schedule.apply(run.optimizer, global_step)
        result = train_step(run, model, images, labels, stop_requested=stop.signalled)
        meter.add(result)
        reader.add(epoch, step, result)
        if reader.due(global_step, last_of_epoch=step + 1 == run.steps_per_epoch):
            values = reader.read(result, run.last_checkpoint, cfg.optim.lr)
            fields = {"loss": values["loss"],
                      **{short: values[key] for key, short in run.method.progress.items()}}
            progress.update(**fields, **{"img/s": meter.steps * cfg.optim.batch_size
                                         / max(time.perf_counter() - t0, 1e-9)})
            if (ctx.is_main and cfg.train.log_every and global_step % cfg.train.log_every == 0
                    and not values["skipped"]):
                logger.log_step(global_step, {"loss": values["loss"], "lr": lr})
        else:
            progress.update()
        # Mid-epoch: save and stop now (at the epoch's last step, the epoch ends first:
        # _pretrain records and checkpoints it, then stops).
        if _stop_now(stop, reader, ctx) and step + 1 < run.steps_per_epoch:
            path = run.save("last.pt", epoch, step + 1)
            raise TrainingInterrupted(
                f"received {stop.name}: saved {path} at epoch {epoch + 1}, step {step + 1}; "
                f"continue with `varcon pretrain --resume {run.run_dir}`"
            )
    progress.close()
    record = meter.record(epoch, lr, time.perf_counter() - t0, cfg.optim.batch_size)
    if ctx.is_main:
        meter.write_samples(run.run_dir, epoch)
    return record


def _stop_now(stop: StopOnSignal, reader: StepReader, ctx: DistContext) -> bool:
    """One process: whether it was signalled. Several: whether some rank was, as of the last
    read (the flag rides on each step's all-reduce), so that every rank stops at one step."""
    return reader.stop_seen if ctx.distributed else stop.signalled
