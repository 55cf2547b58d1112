"""Linear evaluation (frozen encoder + linear classifier) and kNN on encoder features.

The probe reads the encoder output (e.g. 2048-d for ResNet-50), never the projection
head. It trains with SGD + cosine schedule on the training split (with the
``linear.augment`` augmentation; ``eval`` = none, then features are computed once and
cached) and reports top-1/top-5 on the test split at the last epoch.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from varcon.data import TransformedDataset, build_transform
from varcon.data.sampling import EpochBatchSampler
from varcon.evaluation import extract_features, knn_accuracy

from .checkpoint import CheckpointError, load_checkpoint
from .config import Config, apply_overrides, config_from_dict, config_to_dict
from .data import RunData, build_split, build_train_data
from .distributed import DistContext, all_reduce_sum, barrier, setup_distributed, teardown
from .logger import Progress
from .schedule import WarmupCosine

__all__ = ["evaluate_encoder", "linear_from_checkpoint", "train_linear_probe"]


def _shard(dataset: Any, ctx: DistContext) -> Any:
    if not ctx.distributed:
        return dataset
    return torch.utils.data.Subset(dataset, range(ctx.rank, len(dataset), ctx.world_size))


@torch.no_grad()
def _accuracy(
    net: nn.Module, classifier: nn.Module, loader: Any, ctx: DistContext
) -> dict[str, float]:
    counts = torch.zeros(3, dtype=torch.float64, device=ctx.device)  # top1, top5, n
    classifier.eval()
    for inputs, labels in loader:
        inputs, labels = inputs.to(ctx.device), labels.to(ctx.device)
        logits = classifier(net.encode(inputs).float())
        k = min(5, logits.shape[1])
        top = logits.topk(k, dim=1).indices
        hit = top.eq(labels[:, None])
        counts += torch.stack(
            [hit[:, 0].sum(), hit.any(1).sum(), torch.tensor(labels.numel(), device=ctx.device)]
        ).to(counts)
    all_reduce_sum(ctx, counts)
    n = max(float(counts[2]), 1.0)
    return {"top1": 100.0 * float(counts[0]) / n, "top5": 100.0 * float(counts[1]) / n}


def train_linear_probe(
    cfg: Config, net: nn.Module, data: RunData, test_set: Any, ctx: DistContext
) -> dict[str, Any]:
    """Train a linear classifier on the frozen ``net.encode`` features; evaluate it."""
    lc = cfg.linear
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    eval_tf = build_transform("eval", data.image_size, data.mean, data.std)
    num_classes = data.info.num_classes
    per_rank = max(lc.batch_size // ctx.world_size, 1)
    precomputed = lc.augment == "eval"

    if precomputed:  # no augmentation: encode the training split once
        loader = torch.utils.data.DataLoader(
            TransformedDataset(_shard(data.dataset, ctx), eval_tf), batch_size=per_rank,
            num_workers=cfg.data.num_workers,
        )
        feats, labels = extract_features(net.encode, loader, device=ctx.device)
        train_set: Any = torch.utils.data.TensorDataset(feats, labels)
        world, rank = 1, 0  # features are already this rank's shard
    else:
        train_tf = build_transform(lc.augment, data.image_size, data.mean, data.std)
        train_set = TransformedDataset(data.dataset, train_tf)
        world, rank = ctx.world_size, ctx.rank
    sampler = EpochBatchSampler(
        len(train_set), per_rank, rank=rank, world_size=world, seed=cfg.seed + 1,
        drop_last=False,
    )
    if precomputed:
        def collate(keys: list[tuple[int, int]]) -> tuple[torch.Tensor, torch.Tensor]:
            idx = torch.tensor([k for k, _ in keys])
            return feats[idx], labels[idx]

    steps = sampler.batches_per_epoch
    # every registered encoder declares its feature width (the registry checks it)
    classifier: nn.Module = nn.Linear(net.out_dim, num_classes).to(ctx.device)
    optimizer = torch.optim.SGD(classifier.parameters(), lr=lc.lr, momentum=lc.momentum,
                                weight_decay=lc.weight_decay)
    schedule = WarmupCosine(lc.lr, lc.epochs * steps, lc.warmup_epochs * steps)
    model = classifier
    if ctx.distributed:
        model = DistributedDataParallel(classifier)
    criterion = nn.CrossEntropyLoss()

    t0 = time.perf_counter()
    for epoch in range(lc.epochs):
        sampler.set_epoch(epoch)
        model.train()
        if precomputed:
            train_loader: Any = (collate(batch) for batch in sampler)
        else:
            train_loader = torch.utils.data.DataLoader(
                train_set, batch_sampler=sampler, num_workers=cfg.data.num_workers,
                pin_memory=ctx.device.type == "cuda",
            )
        progress = Progress(steps, f"linear {epoch + 1}/{lc.epochs}", mode=cfg.train.progress,
                            enabled=ctx.is_main and lc.epochs <= 20)
        for step, (inputs, targets) in enumerate(train_loader):
            schedule.apply(optimizer, epoch * steps + step)
            inputs, targets = inputs.to(ctx.device), targets.to(ctx.device)
            if not precomputed:
                with torch.no_grad():
                    inputs = net.encode(inputs)
            loss = criterion(model(inputs.float()), targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            progress.update(loss=float(loss.detach()))
        progress.close()

    test_loader = torch.utils.data.DataLoader(
        TransformedDataset(_shard(test_set, ctx), eval_tf), batch_size=per_rank,
        num_workers=cfg.data.num_workers,
    )
    result = _accuracy(net, classifier, test_loader, ctx)
    result.update({"epochs": lc.epochs, "dataset": cfg.data.dataset, "split": "test",
                   "method": cfg.method, "encoder": cfg.model.encoder,
                   "seconds": round(time.perf_counter() - t0, 2)})
    return result


def run_knn(cfg: Config, net: nn.Module, data: RunData, test_set: Any,
            ctx: DistContext) -> dict[str, float]:
    """Weighted kNN (k, temperature from ``cfg.knn``) on encoder features; rank 0."""
    eval_tf = build_transform("eval", data.image_size, data.mean, data.std)
    bs = max(cfg.linear.batch_size, 64)

    def feats(ds: Any) -> tuple[torch.Tensor, torch.Tensor]:
        loader = torch.utils.data.DataLoader(TransformedDataset(ds, eval_tf), batch_size=bs,
                                             num_workers=cfg.data.num_workers)
        return extract_features(net.encode, loader, device=ctx.device)

    train_f, train_y = feats(data.dataset)
    test_f, test_y = feats(test_set)
    return knn_accuracy(train_f, train_y, test_f, test_y, num_classes=data.info.num_classes,
                        k=cfg.knn.k, temperature=cfg.knn.temperature)


def _write_json(path: Path, obj: dict[str, Any]) -> None:
    """Write ``obj``; an earlier file of that name is kept as ``<stem>-<time>.json``."""
    if path.exists():
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(path.stat().st_mtime))
        path.rename(path.with_name(f"{path.stem}-{stamp}{path.suffix}"))
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)


def evaluate_encoder(cfg: Config, net: nn.Module, data: RunData, ctx: DistContext,
                     out_dir: Path) -> dict[str, Any]:
    """Linear probe (writes ``linear.json``) and, if enabled, kNN (``knn.json``)."""
    test_set = build_split(cfg, "test", ctx)
    summary: dict[str, Any] = {}
    if cfg.knn.enabled:
        knn = run_knn(cfg, net, data, test_set, ctx) if ctx.is_main else {}
        barrier(ctx)
        if ctx.is_main:
            knn.update({"k": cfg.knn.k, "temperature": cfg.knn.temperature})
            _write_json(out_dir / "knn.json", knn)
            summary["knn_top1"] = knn["top1"]
    result = train_linear_probe(cfg, net, data, test_set, ctx)
    if ctx.is_main:
        _write_json(out_dir / "linear.json", result)
    summary["linear_top1"] = result["top1"]
    summary["linear_top5"] = result["top5"]
    return summary


def linear_from_checkpoint(
    checkpoint: str | Path, overrides: list[str] | None = None, output_dir: str | None = None
) -> dict[str, Any]:
    """``varcon linear``: rebuild the network from a checkpoint, evaluate its encoder.

    The checkpoint's own config is the base; ``overrides`` (e.g. ``linear.epochs=10``)
    apply on top. An override that changes the architecture is refused.
    """
    from .pretrain import build_from_spec, network_spec  # avoid an import cycle

    state = load_checkpoint(checkpoint)
    base = state["config"]
    cfg = config_from_dict(apply_overrides(base, overrides or []))
    ctx = setup_distributed(cfg.train.device)
    try:
        data = build_train_data(cfg, ctx)
        spec = network_spec(cfg, data.info, data.image_size)
        stored = state["network"]
        changed = {k: (stored.get(k), v) for k, v in spec.items()
                   if k != "method" and stored.get(k) != v}
        if changed:
            details = ", ".join(f"{k}: checkpoint {a!r} vs config {b!r}"
                                for k, (a, b) in changed.items())
            raise CheckpointError(
                f"the checkpoint's network does not match the config ({details}); drop the "
                "overrides that change the model or data, or use the matching checkpoint"
            )
        net = build_from_spec(stored)
        try:
            net.load_state_dict(state["model"])
        except RuntimeError as exc:
            raise CheckpointError(
                f"checkpoint {checkpoint} does not fit encoder {stored['encoder']!r}: "
                f"{str(exc).splitlines()[0]}"
            ) from exc
        net.to(ctx.device)
        ckpt_path = Path(checkpoint)
        out = Path(output_dir) if output_dir else (
            ckpt_path.parent.parent if ckpt_path.parent.name == "checkpoints" else ckpt_path
            if ckpt_path.is_dir() else ckpt_path.parent)
        if ctx.is_main:
            out.mkdir(parents=True, exist_ok=True)
        barrier(ctx)
        summary = evaluate_encoder(cfg, net, data, ctx, out)
        summary["config"] = config_to_dict(cfg)
        return summary
    finally:
        teardown(ctx)
