"""Contrastive (VarCon, SupCon) and cross-entropy pre-training: the whole loop in one file.

Read top to bottom: set-up (processes, run directory, data, network, loss, optimiser),
optional resume, then the epoch loop, then evaluation (kNN, clustering, linear probe:
:mod:`varcon.evaluation`). One code path
serves 1 process and N processes (``torchrun``), CPU and GPU.
"""

from __future__ import annotations

import json
import math
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from varcon._atomic import atomic_write_text
from varcon.data import MultiView, TransformedDataset
from varcon.evaluation.commands import evaluate_after_pretrain, online_knn
from varcon.evaluation.session import EvalSession
from varcon.losses import SupConLoss, VarConLoss
from varcon.models import CheckpointError, build_network_from_spec, load_checkpoint
from varcon.models.weights import load_encoder_weights, read_state_dict
from varcon.runtime.checkpoint import (
    FORMAT_VERSION,
    atomic_save,
    capture_rng_state,
    restore_rng_state,
)
from varcon.runtime.config import Config, config_to_dict
from varcon.runtime.data import build_train_data, build_train_sampler, run_network_spec
from varcon.runtime.distributed import (
    DistContext,
    all_reduce_sum,
    barrier,
    setup_distributed,
    teardown,
)
from varcon.runtime.logger import Progress, RunLogger
from varcon.runtime.schedule import WarmupCosine, build_optimizer

from .micro_batch import check_micro_batch, encode_for_loss
from .rundir import prepare_run_dir

__all__ = ["TrainingDiverged", "TrainingInterrupted", "pretrain", "seed_everything"]


class TrainingInterrupted(RuntimeError):
    """SIGTERM/SIGINT arrived; a checkpoint was saved at the step boundary."""


class TrainingDiverged(RuntimeError):
    """Too many consecutive non-finite losses."""


def seed_everything(seed: int) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass
class _StopFlag:
    """Set by SIGTERM/SIGINT; the loop checks it between steps."""

    signum: int | None = None

    def install(self) -> dict[int, Any]:
        previous = {}
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not in the main thread: leave signals alone
                pass
        return previous

    def _handle(self, signum: int, frame: Any) -> None:
        self.signum = signum


def _autocast_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    if device.type != "cuda" or amp == "off":
        return None
    if amp == "fp16":
        return torch.float16
    if amp == "bf16" or torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16


def build_loss(cfg: Config, num_classes: int) -> nn.Module:
    if cfg.method == "varcon":
        return VarConLoss(
            cfg.loss.temperature,
            cfg.loss.epsilon,
            num_classes=num_classes,
            detach_centroids=cfg.loss.detach_centroids,
            gradient_scale=cfg.loss.gradient_scale,
            prototypes=cfg.loss.prototypes,
            momentum=cfg.loss.momentum,
            # allocated now, so a skipped step can restore them like the BatchNorm buffers
            embedding_dim=cfg.model.head_dim if cfg.loss.prototypes == "ema" else None,
        )
    if cfg.method == "supcon":
        return SupConLoss(
            cfg.loss.temperature, num_classes=num_classes, gradient_scale=cfg.loss.gradient_scale
        )
    return nn.CrossEntropyLoss()


def pretrain(cfg: Config) -> dict[str, Any]:
    """Run pre-training (and, if ``cfg.linear.run_after_pretrain``, linear + kNN
    evaluation). Returns a summary dict (rank 0 holds the full one)."""
    ctx = setup_distributed(cfg.train.device)
    try:
        summary = _pretrain(cfg, ctx)
        # no rank closes its connections while another still uses them (gloo can abort then)
        barrier(ctx)
        return summary
    finally:
        teardown(ctx)


def _pretrain(cfg: Config, ctx: DistContext) -> dict[str, Any]:
    # ---- set-up -------------------------------------------------------------------
    if cfg.optim.batch_size % ctx.world_size:
        raise ValueError(
            f"optim.batch_size={cfg.optim.batch_size} (the global batch) must be divisible by "
            f"the number of processes ({ctx.world_size})"
        )
    check_micro_batch(cfg.train.micro_batch, cfg.optim.batch_size // ctx.world_size,
                      ctx.world_size)
    if cfg.train.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    elif ctx.device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    seed_everything(cfg.seed + ctx.rank)
    # model.pretrained is read once, before the run directory exists (a bad file is
    # reported before any work); checkpoints hold the weights from then on, so a resumed
    # run and evaluation never read it again.
    pretrained = None
    if cfg.model.pretrained and not (cfg.resume and _has_checkpoint(cfg.resume)):
        pretrained = read_state_dict(cfg.model.pretrained)

    run_dir = prepare_run_dir(cfg, ctx)
    data = build_train_data(cfg, ctx)
    # data.sampler: random (EpochBatchSampler) or class_balanced; both give the same global
    # batches whatever the number of processes, and resume mid-epoch.
    sampler = build_train_sampler(cfg, data.dataset, ctx)
    # Contrastive methods see several views per image ([B, V, C, H, W]); ce sees one.
    transform = data.train_transform
    if cfg.method != "ce":
        transform = MultiView(transform, n_views=cfg.data.views)
    # On a GPU, SimAugment views leave the workers as uint8 (4x fewer bytes) and are
    # normalised on the device by train_set.finish; on a CPU the workers normalise.
    train_set = TransformedDataset(data.dataset, transform,
                                   uint8_views=ctx.device.type == "cuda")
    loader = torch.utils.data.DataLoader(
        train_set,
        batch_sampler=sampler,
        num_workers=cfg.data.num_workers,
        pin_memory=ctx.device.type == "cuda",
        persistent_workers=cfg.data.num_workers > 0,
        collate_fn=TransformedDataset.collate,  # batches built in shared memory: no copy
    )
    steps_per_epoch = sampler.batches_per_epoch
    if cfg.train.max_steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, cfg.train.max_steps_per_epoch)

    spec = run_network_spec(cfg, data)
    net = build_network_from_spec(spec)
    if pretrained is not None:
        load_encoder_weights(net.encoder, pretrained, source=cfg.model.pretrained)
    if ctx.distributed and cfg.model.sync_batchnorm:
        net = nn.SyncBatchNorm.convert_sync_batchnorm(net)
    memory_format = torch.channels_last if cfg.model.channels_last else torch.contiguous_format
    net = net.to(ctx.device, memory_format=memory_format)
    # on the device: the loss may hold buffers (loss.prototypes=ema's class prototypes)
    loss_fn = build_loss(cfg, data.info.num_classes).to(ctx.device)
    optimizer = build_optimizer(
        net, cfg.optim.optimizer, cfg.optim.lr, cfg.optim.momentum, cfg.optim.weight_decay,
        cfg.optim.nesterov,
    )
    schedule = WarmupCosine(
        cfg.optim.lr,
        total_steps=cfg.optim.epochs * steps_per_epoch,
        warmup_steps=cfg.optim.warmup_epochs * steps_per_epoch,
        warmup_from=cfg.optim.warmup_from,
        min_lr_ratio=cfg.optim.min_lr_ratio,
    )
    amp_dtype = _autocast_dtype(cfg.train.amp, ctx.device)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)

    # ---- resume ---------------------------------------------------------------------
    start_epoch, start_step = 0, 0
    ckpt_dir = run_dir / "checkpoints"
    if cfg.resume and not _has_checkpoint(cfg.resume):
        # e.g. killed during the first epoch: the run directory exists, no checkpoint yet
        if ctx.is_main:
            print(f"no checkpoint yet in {cfg.resume}: starting from the beginning", flush=True)
    elif cfg.resume:
        state = load_checkpoint(cfg.resume)
        net.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        start_epoch, start_step = int(state["epoch"]), int(state["step_in_epoch"])
        restore_rng_state(state["rng"])
        _restore_loss_state(loss_fn, state, ctx.is_main)
        if ctx.is_main:
            print(f"resumed from {cfg.resume}: epoch {start_epoch + 1}, step {start_step}")
            _drop_epochs_after(run_dir / "metrics.jsonl", start_epoch)

    model: nn.Module = net
    if ctx.distributed:
        device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
        model = DistributedDataParallel(net, device_ids=device_ids)
    if cfg.model.compile:
        model = torch.compile(model)

    def save(name: str, epoch: int, step_in_epoch: int) -> Path:
        path = ckpt_dir / name
        if not ctx.is_main:
            return path
        state = {
            "format": "varcon",
            "format_version": FORMAT_VERSION,
            "model": net.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scaler": scaler.state_dict() if scaler.is_enabled() else None,
            "epoch": epoch,
            "step_in_epoch": step_in_epoch,
            "network": spec,
            "config": config_to_dict(cfg),
            "rng": capture_rng_state(),
        }
        loss_state = loss_fn.state_dict()
        if loss_state:  # e.g. loss.prototypes=ema's class prototypes; batch mode has none
            state["loss"] = loss_state
        try:
            atomic_save(state, path)
        except OSError as exc:  # disk full, quota, read-only: atomic_save kept the old file
            kept = " (the previous one is intact)" if path.exists() else ""
            raise CheckpointError(
                f"could not save checkpoint {path}{kept}: {exc.strerror or exc}. Free disk "
                f"space, then continue with `varcon pretrain --resume {run_dir}`"
            ) from exc
        return path

    logger = RunLogger(run_dir, enabled=ctx.is_main)
    stop = _StopFlag()
    previous_handlers = stop.install()
    consecutive_bad = 0
    last_good = ckpt_dir / "last.pt"
    # Evaluation of this network (validation every train.eval_every epochs, then the final
    # kNN, clustering and probe): its splits are loaded once, on first use.
    evaluation = EvalSession.from_network(cfg, net, data, ctx, run_dir / "eval", last_good)
    global_batch_images = cfg.optim.batch_size

    # ---- training -------------------------------------------------------------------
    try:
        for epoch in range(start_epoch, cfg.optim.epochs):
            model.train()
            first_step = start_step if epoch == start_epoch else 0
            sampler.set_epoch(epoch, first_step)
            record_tau2 = (
                cfg.method == "varcon"
                and cfg.train.tau2_every > 0
                and (epoch + 1) % cfg.train.tau2_every == 0
            )
            sums: dict[str, float] = {}
            tau2_chunks: list[np.ndarray] = []
            done = skipped = 0
            lr = schedule(epoch * steps_per_epoch + first_step)
            progress = Progress(
                steps_per_epoch - first_step, f"epoch {epoch + 1}/{cfg.optim.epochs}",
                mode=cfg.train.progress, enabled=ctx.is_main,
            )
            t0 = time.perf_counter()
            for step, (images, labels) in enumerate(loader, start=first_step):
                if step >= steps_per_epoch:
                    break
                global_step = epoch * steps_per_epoch + step
                lr = schedule.apply(optimizer, global_step)
                images = train_set.finish(images.to(ctx.device, non_blocking=True))
                labels = labels.to(ctx.device, non_blocking=True)
                views = images.shape[1] if images.dim() == 5 else 1  # rows per image
                if images.dim() == 5:  # [B, V, C, H, W] -> B*V rows, labels repeated per view
                    labels = labels.repeat_interleave(images.shape[1])
                    images = images.flatten(0, 1)
                images = images.contiguous(memory_format=memory_format)

                # A skipped step must not keep what its forward pass wrote into the
                # BatchNorm running statistics (NaN there would poison evaluation), nor
                # the loss's class prototypes (loss.prototypes=ema) updated by this batch.
                stateful = [*net.buffers(), *loss_fn.buffers()]
                saved_buffers = [b.detach().clone() for b in stateful]
                # train.micro_batch: encoded in chunks without activations, back-propagated
                # chunk by chunk after the loss (gradient caching, engine/micro_batch.py)
                outputs, backward = encode_for_loss(
                    model, images, cfg.train.micro_batch * views, amp_dtype=amp_dtype
                )
                stats = None
                if cfg.method == "varcon":
                    loss, stats = loss_fn(outputs, labels, return_stats=True)
                else:
                    loss = loss_fn(outputs.float(), labels)

                # One host-device synchronisation per step: the loss and the VarCon
                # statistics come back together (plus, with several processes, how many
                # ranks saw a non-finite loss: all must agree to skip, or DDP would hang).
                values = [loss.detach().float()]
                if stats is not None:
                    tau2 = stats.tau2
                    values += [stats.kl.mean(), stats.nll.mean(), tau2.mean(),
                               (tau2 * tau2).mean(), stats.confidence.mean()]
                values_t = torch.stack(values)
                if ctx.distributed:
                    bad = (~torch.isfinite(values_t[:1])).float()
                    values_t = torch.cat([values_t, all_reduce_sum(ctx, bad)])
                host = values_t.tolist()
                loss_value = host[0]
                if not math.isfinite(loss_value) or (ctx.distributed and host[-1] > 0):
                    skipped += 1
                    consecutive_bad += 1
                    optimizer.zero_grad(set_to_none=True)
                    with torch.no_grad():
                        for buf, saved in zip(stateful, saved_buffers, strict=True):
                            buf.copy_(saved)
                    if ctx.is_main:
                        print(f"warning: non-finite loss at epoch {epoch + 1}, batch {step}: "
                              "step skipped", flush=True)
                    if consecutive_bad >= cfg.train.max_nonfinite_steps:
                        raise TrainingDiverged(
                            f"{consecutive_bad} consecutive non-finite losses (last at epoch "
                            f"{epoch + 1}, batch {step}). Likely causes: a learning rate too "
                            f"high for this batch size (optim.lr={cfg.optim.lr}), fp16 overflow "
                            "(try train.amp=bf16 or train.amp=off), or corrupt input data. "
                            f"Last good checkpoint: {last_good if last_good.exists() else 'none'}"
                        )
                    continue
                consecutive_bad = 0
                optimizer.zero_grad(set_to_none=True)
                backward(scaler.scale(loss))
                scaler.step(optimizer)
                scaler.update()

                done += 1
                sums["loss"] = sums.get("loss", 0.0) + loss_value
                fields = {"loss": loss_value}
                if stats is not None:
                    for key, value in zip(("kl", "nll", "tau2", "tau2_sq", "confidence"),
                                          host[1:6], strict=True):
                        sums[key] = sums.get(key, 0.0) + value
                    fields["tau2"], fields["conf"] = host[3], host[5]
                    if record_tau2 and ctx.is_main:
                        tau2_chunks.append(stats.tau2.float().cpu().numpy())
                elapsed = time.perf_counter() - t0
                fields["img/s"] = done * global_batch_images / max(elapsed, 1e-9)
                progress.update(**fields)
                if ctx.is_main and cfg.train.log_every and global_step % cfg.train.log_every == 0:
                    logger.log_step(global_step, {"loss": loss_value, "lr": lr})

                if _should_stop(stop, ctx):
                    path = save("last.pt", epoch, step + 1)
                    raise TrainingInterrupted(
                        f"received {signal.Signals(stop.signum or signal.SIGTERM).name}: saved "
                        f"{path} at epoch {epoch + 1}, step {step + 1}; continue with "
                        f"`varcon pretrain --resume {run_dir}`"
                    )
            progress.close()
            epoch_time = time.perf_counter() - t0

            record: dict[str, Any] = {"epoch": epoch + 1, "lr": lr, "steps": done,
                                      "skipped_steps": skipped, "epoch_time": epoch_time,
                                      "images_per_s": done * global_batch_images / epoch_time}
            for key, total in sums.items():
                record[key] = total / max(done, 1)
            if "tau2_sq" in record:
                record["tau2_std"] = math.sqrt(max(record.pop("tau2_sq") - record["tau2"] ** 2, 0))
                record["tau2_mean"] = record.pop("tau2")
                record["confidence_mean"] = record.pop("confidence")
            if cfg.train.eval_every and (epoch + 1) % cfg.train.eval_every == 0:
                # validation during pre-training: the encoder as it is now, kNN on the test split
                record.update(online_knn(evaluation))
            logger.log_epoch(record)
            if ctx.is_main:
                print(_format_epoch(record), flush=True)
                if tau2_chunks:
                    (run_dir / "tau2").mkdir(exist_ok=True)
                    tau2_file = run_dir / "tau2" / f"epoch_{epoch + 1}.npy"
                    np.save(tau2_file, np.concatenate(tau2_chunks))
            save("last.pt", epoch + 1, 0)
            if cfg.train.save_every and (epoch + 1) % cfg.train.save_every == 0:
                save(f"epoch_{epoch + 1}.pt", epoch + 1, 0)
            barrier(ctx)
    finally:
        for sig, handler in previous_handlers.items():
            signal.signal(sig, handler)
        logger.close()

    summary: dict[str, Any] = {"run_dir": str(run_dir), "epochs": cfg.optim.epochs,
                               "method": cfg.method, "dataset": cfg.data.dataset}
    if cfg.linear.run_after_pretrain:
        summary.update(evaluate_after_pretrain(evaluation))
    return summary


def _restore_loss_state(loss_fn: nn.Module, state: dict[str, Any], verbose: bool) -> None:
    """Load the loss module's buffers from a checkpoint's "loss" entry. Checkpoints
    written before the entry existed, or by a loss without state, have none: the loss
    then starts from its initial state (for loss.prototypes=ema: no class seen yet)."""
    has_state = bool(loss_fn.state_dict())
    saved = state.get("loss")
    if has_state and saved:
        loss_fn.load_state_dict(saved)
    elif verbose and has_state:
        print("note: the checkpoint holds no loss state (class prototypes): they start "
              "empty and fill up again from the next batches", flush=True)
    elif verbose and saved:
        print("note: the checkpoint's loss state (class prototypes) is not used by this "
              "config's loss (loss.prototypes=batch): ignored", flush=True)


def _drop_epochs_after(metrics: Path, epoch: int) -> None:
    """Keep only the records of epochs 1..``epoch`` in metrics.jsonl: the later ones (a
    crash between logging an epoch and checkpointing it) are about to be trained again."""
    if not metrics.is_file():
        return
    lines = metrics.read_text(encoding="utf-8").splitlines(keepends=True)
    kept = [line for line in lines if line.strip() and json.loads(line).get("epoch", 0) <= epoch]
    if len(kept) != len(lines):
        atomic_write_text(metrics, "".join(kept))


def _has_checkpoint(resume: str) -> bool:
    """Whether ``resume`` (a checkpoint file or a run directory) names a checkpoint;
    a file that does not exist counts, so that loading it reports the problem."""
    path = Path(resume)
    if not path.is_dir():
        return True
    return (path / "checkpoints" / "last.pt").exists() or (path / "last.pt").exists()


def _should_stop(stop: _StopFlag, ctx: DistContext) -> bool:
    """Whether any rank was signalled (all ranks must stop at the same step)."""
    if not ctx.distributed:
        return stop.signum is not None
    flag = torch.tensor([1.0 if stop.signum is not None else 0.0], device=ctx.device)
    all_reduce_sum(ctx, flag)
    return bool(flag.item() > 0)


def _format_epoch(record: dict[str, Any]) -> str:
    parts = [f"epoch {record['epoch']}"]
    for key in ("loss", "kl", "nll", "tau2_mean", "tau2_std", "confidence_mean", "val_knn_top1",
                "lr"):
        if key in record:
            parts.append(f"{key} {record[key]:.4g}")
    parts.append(f"{record['images_per_s']:.0f} img/s")
    if record["skipped_steps"]:
        parts.append(f"skipped {record['skipped_steps']}")
    return " | ".join(parts)

