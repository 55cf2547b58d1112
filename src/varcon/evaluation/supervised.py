"""The supervised loop on augmented images, shared by the linear probe and fine-tuning.

Both protocols train a classifier with cross-entropy on freshly augmented training images
every epoch:

* the linear probe with ``linear.augment`` other than ``eval``: the encoder is frozen and
  only ``nn.Linear(out_dim, C)`` learns (:mod:`varcon.evaluation.linear`);
* fine-tuning: the encoder and a new head learn together (:mod:`varcon.evaluation.finetune`).

For step ``t = epoch * S + step`` of ``E * S`` (``S`` batches per epoch per process) the loop
sets the learning rate of every parameter group to ``warmup_cosine(t) * lr_scale``, computes

    loss = CE(forward(x), y),    x: [B, C, H, W] augmented images,  y: [B] labels

in ``float32`` (the forward pass under autocast where ``amp_dtype`` is given), and takes one
optimizer step (through a gradient scaler for ``float16``). Under ``torchrun`` each process
reads its shard of every global batch (:class:`~varcon.data.sampling.EpochBatchSampler`);
the caller wraps the model in DDP. A non-finite loss stops the loop with
:class:`SupervisedDiverged`, naming the epoch, the step and the setting to lower.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from varcon.data import TransformedDataset, build_transform
from varcon.data.sampling import EpochBatchSampler
from varcon.runtime.backend import grad_scaler
from varcon.runtime.distributed import all_reduce_sum
from varcon.runtime.logger import Progress
from varcon.runtime.schedule import WarmupCosine

from .session import EvalSession

__all__ = ["AugmentedTraining", "SupervisedDiverged", "train_on_augmented_images"]


class SupervisedDiverged(ValueError):
    """The cross-entropy loss became NaN or infinite (the learning rate is too high)."""


@dataclass(frozen=True)
class AugmentedTraining:
    """What the loop needs from a protocol's config section.

    ``batch_size`` is global (split over processes); ``seed`` orders the batches;
    ``drop_last`` leaves out the remainder batch of every epoch; ``desc`` names the progress
    bar and the error; ``lr_hint`` says which setting to lower when the loss diverges.
    """

    epochs: int
    batch_size: int
    lr: float
    warmup_epochs: int
    augment: str
    seed: int
    desc: str
    lr_hint: str
    drop_last: bool = False


def train_on_augmented_images(
    session: EvalSession,
    forward: Callable[[torch.Tensor], torch.Tensor],
    optimizer: torch.optim.Optimizer,
    settings: AugmentedTraining,
    *,
    amp_dtype: torch.dtype | None = None,
    error: type[SupervisedDiverged] = SupervisedDiverged,
) -> dict[str, list[float]]:
    """Train whatever ``forward`` (images ``[B, C, H, W]`` -> logits ``[B, K]``) reaches
    through ``optimizer``, on ``session``'s training split augmented with
    ``settings.augment``.

    Returns the history ``{"train_loss": [...], "train_top1": [...]}``: one entry per epoch,
    the mean loss and top-1 (percent) over every process's images of that epoch.
    """
    cfg, ctx, s = session.cfg, session.ctx, settings
    transform = build_transform(s.augment, session.data.image_size, session.data.mean,
                                session.data.std)
    train_set = TransformedDataset(session.data.dataset, transform)
    per_rank = max(s.batch_size // ctx.world_size, 1)
    sampler = EpochBatchSampler(len(train_set), per_rank, rank=ctx.rank,
                                world_size=ctx.world_size, seed=s.seed, drop_last=s.drop_last)
    steps = sampler.batches_per_epoch
    schedule = WarmupCosine(s.lr, s.epochs * steps, s.warmup_epochs * steps)
    scaler = grad_scaler(amp_dtype, ctx.device)
    criterion = nn.CrossEntropyLoss()
    history: dict[str, list[float]] = {"train_loss": [], "train_top1": []}
    read_every = cfg.train.log_every or 10
    for epoch in range(s.epochs):
        sampler.set_epoch(epoch)
        loader = torch.utils.data.DataLoader(
            train_set, batch_sampler=sampler, num_workers=cfg.data.num_workers,
            pin_memory=ctx.device.type == "cuda",
        )
        bar = Progress(steps, f"{s.desc} {epoch + 1}/{s.epochs}", mode=cfg.train.progress,
                       enabled=ctx.is_main and s.epochs <= 20)
        # sums on the device (float64: the same sums as Python floats); the host reads the
        # losses every `read_every` steps and at the epoch's end, not every step
        sums = torch.zeros(2, dtype=torch.float64, device=ctx.device)  # loss * n, correct
        seen = 0
        window: list[tuple[int, torch.Tensor]] = []
        for step, (images, targets) in enumerate(loader):
            schedule.apply(optimizer, epoch * steps + step)
            images = images.to(ctx.device, non_blocking=True)
            targets = targets.to(ctx.device, non_blocking=True)
            with torch.autocast(ctx.device.type, dtype=amp_dtype or torch.float32,
                                enabled=amp_dtype is not None):
                logits = forward(images)
            loss = criterion(logits.float(), targets)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            n = targets.numel()
            sums += torch.stack([loss.detach().double() * n,
                                 (logits.detach().argmax(1) == targets).sum().double()])
            seen += n
            window.append((step, loss.detach()))
            if step % read_every == 0 or step + 1 == steps:
                losses = torch.stack([value for _, value in window]).tolist()
                _stop_if_nonfinite(losses, [i for i, _ in window], epoch, s, error)
                bar.update(loss=losses[-1])
                window.clear()
            else:
                bar.update()
        bar.close()
        totals = torch.cat([sums, sums.new_tensor([seen])])
        loss_sum, correct, total = all_reduce_sum(ctx, totals).tolist()
        history["train_loss"].append(loss_sum / max(total, 1))
        history["train_top1"].append(100.0 * correct / max(total, 1))
    return history


def _stop_if_nonfinite(losses: list[float], steps: list[int], epoch: int,
                       s: AugmentedTraining, error: type[SupervisedDiverged]) -> None:
    """Raise ``error`` at the first non-finite loss of a window of steps."""
    for step, value in zip(steps, losses, strict=True):
        if not math.isfinite(value):
            raise error(f"{s.desc} loss is {value} at epoch {epoch + 1}, step {step + 1}; "
                        f"{s.lr_hint}")
