"""A training run's state: built in one function, resumed in one, saved in one.

:func:`build_run_state` makes everything a run holds (run directory, data, sampler, loader,
network, method and loss, optimiser, schedule, scaler) in a fixed order: the network's
random initialisation draws from the seeded generator, so the order is part of the result.
:func:`resume` puts a checkpoint back; :func:`wrap_for_training` adds DDP and
``torch.compile`` around the network; :meth:`RunState.save` writes a checkpoint.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from varcon.data import MultiView, TransformedDataset
from varcon.methods import MethodSpec, get_method
from varcon.models import Network, build_network_from_spec
from varcon.models.weights import load_encoder_weights, read_state_dict
from varcon.runtime.backend import autocast_dtype, grad_scaler
from varcon.runtime.checkpoint import (
    checkpoint_path,
    has_checkpoint,
    load_checkpoint,
    prepare_run_dir,
    restore_training_state,
    save_checkpoint,
)
from varcon.runtime.config import Config, config_to_dict
from varcon.runtime.data import RunData, build_train_data, build_train_sampler, run_network_spec
from varcon.runtime.distributed import DistContext
from varcon.runtime.schedule import WarmupCosine, build_optimizer

from .micro_batch import check_micro_batch

__all__ = ["RunState", "build_loss", "build_run_state", "resume", "seed_everything",
           "wrap_for_training"]


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's global and torch's generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build_loss(cfg: Config, num_classes: int) -> nn.Module:
    """The loss module of ``cfg.method`` (its registered :class:`MethodSpec` builds it)."""
    return get_method(cfg.method).build_loss(cfg, num_classes)


@dataclass
class RunState:
    """What a training run holds. ``net`` is the bare network (checkpointed, evaluated);
    the step calls the wrapper :func:`wrap_for_training` returns."""

    cfg: Config
    ctx: DistContext
    run_dir: Path
    data: RunData
    sampler: Any  # EpochBatchSampler | ClassBalancedBatchSampler: set_epoch(epoch, first_step)
    train_set: TransformedDataset
    loader: torch.utils.data.DataLoader
    steps_per_epoch: int
    spec: dict[str, Any]
    net: Network
    method: MethodSpec
    loss_fn: nn.Module
    optimizer: torch.optim.Optimizer
    schedule: WarmupCosine
    scaler: torch.amp.GradScaler
    amp_dtype: torch.dtype | None
    memory_format: torch.memory_format

    @property
    def last_checkpoint(self) -> Path:
        return checkpoint_path(self.run_dir)

    def save(self, name: str, epoch: int, step_in_epoch: int) -> Path:
        """Checkpoint ``checkpoints/<name>`` at (``epoch`` done, ``step_in_epoch``); every
        rank calls it (each adds its random state), rank 0 writes."""
        return save_checkpoint(
            checkpoint_path(self.run_dir, name), network=self.net, optimizer=self.optimizer,
            scaler=self.scaler, loss=self.loss_fn, epoch=epoch, step_in_epoch=step_in_epoch,
            spec=self.spec, config=config_to_dict(self.cfg), is_main=self.ctx.is_main,
            resume_hint=f"varcon pretrain --resume {self.run_dir}",
        )


def build_run_state(cfg: Config, ctx: DistContext) -> RunState:
    """Check what only the process count can tell, seed, create the run directory, and build
    the data, network, loss, optimiser, schedule and scaler of ``cfg``."""
    if cfg.optim.batch_size % ctx.world_size:
        raise ValueError(
            f"optim.batch_size={cfg.optim.batch_size} (the global batch) must be divisible by "
            f"the number of processes ({ctx.world_size})"
        )
    check_micro_batch(cfg.train.micro_batch, cfg.optim.batch_size // ctx.world_size,
                      ctx.world_size)
    seed_everything(cfg.seed + ctx.rank)
    method = get_method(cfg.method)
    # model.pretrained is read once, before the run directory exists (a bad file is
    # reported before any work); checkpoints hold the weights from then on, so a resumed
    # run and evaluation never read it again.
    pretrained = None
    if cfg.model.pretrained and not (cfg.resume and has_checkpoint(cfg.resume)):
        pretrained = read_state_dict(cfg.model.pretrained)

    run_dir = prepare_run_dir(cfg, ctx)
    data = build_train_data(cfg, ctx)
    # data.sampler: random (EpochBatchSampler) or class_balanced; both give the same global
    # batches whatever the number of processes, and resume mid-epoch.
    sampler = build_train_sampler(cfg, data.pretrain_set, ctx)
    # Contrastive methods see several views per image ([B, V, C, H, W]); ce sees one.
    transform = data.train_transform
    if method.multi_view:
        transform = MultiView(transform, n_views=cfg.data.views)
    # On a GPU, SimAugment views leave the workers as uint8 (4x fewer bytes) and are
    # normalised on the device by train_set.finish; on a CPU the workers normalise.
    on_gpu = ctx.device.type == "cuda"
    # pretrain_set: the labelled images for supervised methods; all images for self- and
    # semi-supervised ones, their hidden labels -1 (pretrain_labels)
    train_set = TransformedDataset(data.pretrain_set, transform, uint8_views=on_gpu,
                                   labels=data.pretrain_labels)
    loader = torch.utils.data.DataLoader(
        train_set,
        batch_sampler=sampler,
        num_workers=cfg.data.num_workers,
        pin_memory=on_gpu,
        persistent_workers=cfg.data.num_workers > 0,
        collate_fn=TransformedDataset.collate,  # batches built in shared memory: no copy
        # Each epoch's iterator draws its workers' base seed from this generator, not from
        # the global stream that dropout and stochastic depth draw from: a resumed run opens
        # its epoch's iterator at another point of that stream than the uninterrupted run,
        # and must not shift it. (Augmentations are seeded per item by the sampler.)
        generator=torch.Generator().manual_seed(cfg.seed + ctx.rank),
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
    net = net.to(ctx.device).to(memory_format=memory_format)
    # on the device: the loss may hold buffers (loss.prototypes=ema's class prototypes)
    loss_fn = build_loss(cfg, data.info.num_classes).to(ctx.device)
    o = cfg.optim
    optimizer = build_optimizer(net, o.optimizer, o.lr, o.momentum, o.weight_decay, o.nesterov)
    schedule = WarmupCosine(
        o.lr, total_steps=o.epochs * steps_per_epoch,
        warmup_steps=o.warmup_epochs * steps_per_epoch, warmup_from=o.warmup_from,
        min_lr_ratio=o.min_lr_ratio,
    )
    amp_dtype = autocast_dtype(cfg.train.amp, ctx.device)
    scaler = grad_scaler(amp_dtype, ctx.device)  # float16 only; "cpu" or "cuda" scaler
    return RunState(cfg, ctx, run_dir, data, sampler, train_set, loader, steps_per_epoch, spec,
                    net, method, loss_fn, optimizer, schedule, scaler, amp_dtype, memory_format)


def resume(run: RunState) -> tuple[int, int]:
    """Continue from ``cfg.resume``'s checkpoint: weights, optimiser, scaler, loss buffers
    and each rank's random state. Returns ``(epoch, step_in_epoch)`` to start from."""
    cfg, ctx = run.cfg, run.ctx
    if not cfg.resume:
        return 0, 0
    if not has_checkpoint(cfg.resume):
        # e.g. killed during the first epoch: the run directory exists, no checkpoint yet
        if ctx.is_main:
            print(f"no checkpoint yet in {cfg.resume}: starting from the beginning", flush=True)
        return 0, 0
    state = load_checkpoint(cfg.resume)
    epoch, step = restore_training_state(
        state, network=run.net, optimizer=run.optimizer, scaler=run.scaler, loss=run.loss_fn,
        rank=ctx.rank, world_size=ctx.world_size)
    if ctx.is_main:
        print(f"resumed from {cfg.resume}: epoch {epoch + 1}, step {step}")
    return epoch, step


def wrap_for_training(run: RunState) -> nn.Module:
    """The module the step calls: the network, under DDP with several processes, compiled
    with ``model.compile``."""
    model: nn.Module = run.net
    if run.ctx.distributed:
        device_ids = [run.ctx.device.index] if run.ctx.device.type == "cuda" else None
        model = DistributedDataParallel(run.net, device_ids=device_ids)
    if run.cfg.model.compile:
        model = cast(nn.Module, torch.compile(model))
    return model
