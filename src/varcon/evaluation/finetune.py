"""Fine-tuning: the encoder and a linear head trained end to end with cross-entropy.

The standard protocol beside the frozen linear probe (:mod:`varcon.evaluation.linear`): a
new ``nn.Linear(out_dim, C)`` on the encoder output (never the projection head); images
``[B, C, H, W]`` -> logits ``[B, num_classes]``; loss ``CE(head(encoder(x)), y)``. SGD with
momentum and weight decay, a linear warm-up + cosine schedule per step, and two rates:

    lr_head(t)    = lr(t)
    lr_encoder(t) = lr(t) * encoder_lr_scale          (default 0.1)

so the pre-trained features move slower than the new head. The training split is augmented
with ``finetune.augment`` (default ``linear``: random resized crop + flip, the probe's). The
encoder trains in train mode (BatchNorm statistics update). Top-1/top-5 are reported on the
test split after the last epoch, with the per-epoch training loss and accuracy.

Under ``torchrun`` the model is wrapped in DDP (each rank a shard of every global batch of
``finetune.batch_size``), as the probe's augmented training is; on CUDA the forward pass
runs under bf16 autocast unless ``train.amp=off`` (fp16 with a gradient scaler where asked).
"""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from varcon.runtime.backend import autocast_dtype
from varcon.runtime.config import FinetuneConfig

from .linear import probe_accuracy
from .results import save_array, write_result
from .session import EvalSession
from .supervised import AugmentedTraining, SupervisedDiverged, train_on_augmented_images

__all__ = ["FinetuneDiverged", "FinetuneModel", "finetune_param_groups", "run_finetune",
           "train_finetune"]


class FinetuneDiverged(SupervisedDiverged):
    """The fine-tuning loss became NaN or infinite (the learning rate is too high)."""


class FinetuneModel(nn.Module):
    """``forward(x) = head(encoder(x))``: ``[N, C, H, W] -> [N, num_classes]`` logits."""

    def __init__(self, encoder: nn.Module, head: nn.Linear) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))


def finetune_param_groups(model: FinetuneModel, fc: FinetuneConfig) -> list[dict[str, Any]]:
    """Two SGD parameter groups: the encoder at ``lr * encoder_lr_scale``, the head at ``lr``.

    Each group carries ``lr_scale``, which :meth:`WarmupCosine.apply` multiplies into the
    scheduled rate, and ``name`` (``"encoder"``/``"head"``).
    """
    return [
        {"params": [p for p in model.encoder.parameters() if p.requires_grad],
         "lr": fc.lr * fc.encoder_lr_scale, "lr_scale": fc.encoder_lr_scale,
         "name": "encoder"},
        {"params": list(model.head.parameters()), "lr": fc.lr, "lr_scale": 1.0,
         "name": "head"},
    ]


def train_finetune(session: EvalSession) -> tuple[FinetuneModel, dict[str, list[float]]]:
    """Fine-tune ``session.net.encoder`` (in place) with a new linear head on the session's
    training split, as ``cfg.finetune`` says.

    Returns the model (eval mode) and the history ``{"train_loss": [...], "train_top1":
    [...]}``, one entry per epoch over every process's images.
    """
    cfg, ctx, fc = session.cfg, session.ctx, session.cfg.finetune
    encoder = session.net.encoder
    torch.manual_seed(cfg.seed + 2)  # the head's initialisation
    head = nn.Linear(session.net.out_dim, session.num_classes)
    model = FinetuneModel(encoder, head)
    if ctx.distributed and cfg.model.sync_batchnorm:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model = model.to(ctx.device).train()
    wrapped: nn.Module = model
    if ctx.distributed:
        device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
        wrapped = DistributedDataParallel(model, device_ids=device_ids)

    optimizer = torch.optim.SGD(finetune_param_groups(model, fc), lr=fc.lr,
                                momentum=fc.momentum, weight_decay=fc.weight_decay)
    per_rank = max(fc.batch_size // ctx.world_size, 1)
    settings = AugmentedTraining(
        epochs=fc.epochs, batch_size=fc.batch_size, lr=fc.lr, warmup_epochs=fc.warmup_epochs,
        augment=fc.augment, seed=cfg.seed + 2, desc="finetune",
        lr_hint=f"lower finetune.lr (now {fc.lr}) or finetune.encoder_lr_scale",
        # Full batches when there are enough images: a BatchNorm step on a 1-image remainder
        # would be noisy (or fail, for BatchNorm1d layers).
        drop_last=len(session.data.dataset) >= per_rank * ctx.world_size)
    history = train_on_augmented_images(session, wrapped, optimizer, settings,
                                        amp_dtype=autocast_dtype(cfg.train.amp, ctx.device),
                                        error=FinetuneDiverged)
    return model.eval(), history


def run_finetune(session: EvalSession, *, name: str = "finetune") -> dict[str, Any]:
    """Fine-tune, test, write ``<name>.json`` and ``<name>_confusion.npy`` (rank 0).

    Trains ``session.net.encoder`` in place, so features the session extracted earlier
    (of the frozen encoder) are not reused: the test split is encoded afresh.
    Returns the results dict on every rank.
    """
    t0 = time.perf_counter()
    session.prepare_output()
    model, history = train_finetune(session)
    # net.encode is the fine-tuned encoder now (same module, trained in place)
    test_f, test_y = session.encode_dataset(session.test_set(), "encoder",
                                            desc="features test/finetuned")
    result = probe_accuracy(model.head, test_f, test_y, session.num_classes)
    confusion = result.pop("confusion")
    # the last epoch's training figures; the per-epoch curves under "history"
    result.update({"train_loss": history["train_loss"][-1],
                   "train_top1": history["train_top1"][-1], "history": history})
    if session.ctx.is_main:
        fc = session.cfg.finetune
        settings = {"epochs": fc.epochs, "batch_size": fc.batch_size, "lr": fc.lr,
                    "encoder_lr": fc.lr * fc.encoder_lr_scale,
                    "encoder_lr_scale": fc.encoder_lr_scale, "momentum": fc.momentum,
                    "weight_decay": fc.weight_decay, "warmup_epochs": fc.warmup_epochs,
                    "augment": fc.augment, "schedule": "cosine", "seed": session.cfg.seed + 2,
                    "world_size": session.ctx.world_size}
        save_array(session.out_dir / f"{name}_confusion.npy", confusion)
        write_result(session.out_dir, "finetune", name=name, results=result, settings=settings,
                     context=session.context("encoder"), seconds=time.perf_counter() - t0)
    return result
