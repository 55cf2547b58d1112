"""End-to-end pre-training throughput on synthetic CIFAR-shaped data (batch 512, 2 views).

* ``ours``: ``varcon.engine.pretrain`` with the CIFAR-10 recipe (VarCon, SimAugment
  batched in DataLoader workers, uint8 views normalised on the GPU), ``train.amp=bf16``,
  ``model.channels_last=true``, with or without ``model.compile=true``. Two epochs of
  ``steps`` batches; the second is timed (the first holds worker start, cuDNN autotuning
  and compilation).
* ``authors``: their loop, rebuilt here: a CIFAR dataset of PIL images, torchvision's
  transforms per image in DataLoader workers (SupCon's TwoCropTransform: RandomResizedCrop
  0.2-1, flip, ColorJitter 0.4/0.4/0.4/0.1 p 0.8, grayscale 0.2, ToTensor, Normalize),
  fp16 autocast with a GradScaler, the authors' dense loss (``bench_losses.authors_varcon``),
  SGD, ``loss.item()`` every step (their AverageMeter). Same network and batch.
* ``breakdown``: an instrumented pass of our step (bf16, channels_last, eager), each
  section closed by ``torch.cuda.synchronize``: waiting for data (next batch, copy,
  normalisation), forward, loss, backward, optimiser. A separate pass: the
  synchronisations slow it; its fractions, not its speed, are the result.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from benchmarks.bench_losses import authors_varcon

from .common import (
    CIFAR_MEAN,
    CIFAR_STD,
    SYNTHETIC,
    Sizes,
    peak_gb,
    register_synthetic,
    reset_peak,
    sync,
    synthetic_images,
)


def _config(s: Sizes, encoder: str, out: Path, *, compile_: bool, epochs: int = 2,
            steps: int | None = None) -> Any:
    from varcon.runtime.config import (
        apply_overrides,
        config_from_dict,
        read_yaml,
        resolve_config_path,
    )

    data = read_yaml(resolve_config_path("cifar10"))
    return config_from_dict(apply_overrides(data, [
        f"output_dir={out}", f"data.dataset={SYNTHETIC}", f"data.num_workers={s.workers}",
        f"model.encoder={encoder}", f"optim.batch_size={s.batch}", f"optim.epochs={epochs}",
        "optim.warmup_epochs=0", f"train.max_steps_per_epoch={steps or s.steps}",
        "linear.run_after_pretrain=false", "train.progress=off", "train.tau2_every=0",
        "train.save_every=0", f"train.amp={s.ours_amp}", "model.channels_last=true",
        f"model.compile={str(compile_).lower()}", f"train.device={s.device}",
    ]))


def ours(s: Sizes, slot: str, *, compile_: bool) -> dict[str, Any]:
    from varcon.engine.pretrain import pretrain

    encoder = s.models[slot]
    register_synthetic(s.batch * s.steps)
    device = torch.device(s.device)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = _config(s, encoder, Path(tmp) / "run", compile_=compile_)
        reset_peak(device)
        t0 = time.perf_counter()
        pretrain(cfg)
        total = time.perf_counter() - t0
        records = [json.loads(line) for line in
                   (Path(tmp) / "run" / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in records if "epoch_time" in r]
    timed = epochs[-1]
    steps = int(timed.get("steps", s.steps))
    ips = timed.get("images_per_s") or steps * s.batch / timed["epoch_time"]
    return {"model": slot, "encoder": encoder,
            "variant": f"ours {s.ours_amp} + channels_last" + (" + compile" if compile_ else ""),
            "images_per_s": round(float(ips), 1),
            "step_ms": round(1e3 * timed["epoch_time"] / steps, 2),
            "first_epoch_s": round(epochs[0]["epoch_time"], 2), "total_s": round(total, 2),
            "loss": timed.get("loss"), "peak_gb": peak_gb(device), "batch": s.batch,
            "timed_steps": steps, "workers": s.workers}


class _PILImages(torch.utils.data.Dataset):
    """What torchvision.datasets.CIFAR10 does per item: a PIL image from the HWC array."""

    def __init__(self, images: np.ndarray, labels: list[int], transform: Any) -> None:
        self.data, self.targets, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        return self.transform(Image.fromarray(self.data[i])), self.targets[i]


class _TwoCrop:
    def __init__(self, transform: Any) -> None:
        self.transform = transform

    def __call__(self, x: Any) -> list[Any]:
        return [self.transform(x), self.transform(x)]


def authors(s: Sizes, slot: str) -> dict[str, Any]:
    from torchvision import transforms as T

    from varcon.models import build_network

    encoder = s.models[slot]
    device = torch.device(s.device)
    images, labels = synthetic_images(s.batch * (s.steps + s.authors_warmup))
    transform = T.Compose([
        T.RandomResizedCrop(size=32, scale=(0.2, 1.0)), T.RandomHorizontalFlip(),
        T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8), T.RandomGrayscale(p=0.2),
        T.ToTensor(), T.Normalize(CIFAR_MEAN, CIFAR_STD)])
    dataset = _PILImages(images.permute(0, 2, 3, 1).contiguous().numpy(), labels.tolist(),
                         _TwoCrop(transform))
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=s.batch, shuffle=True, num_workers=s.workers,
        pin_memory=device.type == "cuda", drop_last=True, persistent_workers=s.workers > 0)
    torch.manual_seed(0)
    net = build_network("varcon", encoder, num_classes=10, in_channels=3,
                        image_size=32).to(device)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.0625, momentum=0.9, weight_decay=8e-4)
    scaler = torch.amp.GradScaler(device.type, enabled=s.authors_fp16)
    torch.backends.cudnn.benchmark = True
    net.train()
    reset_peak(device)
    times, losses, nonfinite = [], [], 0
    sync(device)
    last = time.perf_counter()
    for step, (views, y) in enumerate(loader):
        x = torch.cat([views[0], views[1]], dim=0).to(device, non_blocking=True)
        y = y.to(device, non_blocking=True).repeat(2)
        with torch.autocast(device.type, dtype=torch.float16, enabled=s.authors_fp16):
            loss = authors_varcon(net(x), y)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        value = loss.item()  # their AverageMeter: one synchronisation per step
        nonfinite += not np.isfinite(value)
        now = time.perf_counter()
        if step >= s.authors_warmup:
            times.append(now - last)
            losses.append(value)
        last = now
    step_s = sum(times) / len(times)
    amp = "fp16 AMP" if s.authors_fp16 else "fp32"
    return {"model": slot, "encoder": encoder, "variant": f"authors' loop (PIL, {amp})",
            "images_per_s": round(s.batch / step_s, 1), "step_ms": round(1e3 * step_s, 2),
            "median_step_ms": round(1e3 * statistics.median(times), 2),
            "loss": float(np.mean(losses)), "nonfinite_steps": nonfinite,
            "peak_gb": peak_gb(device), "batch": s.batch, "timed_steps": len(times),
            "workers": s.workers}


SECTIONS = ("data", "forward", "loss", "backward", "optimizer")


def breakdown(s: Sizes, slot: str) -> dict[str, Any]:
    """Our step, instrumented (the engine's step without its non-finite bookkeeping)."""
    from varcon.engine.state import build_run_state, wrap_for_training
    from varcon.runtime.backend import torch_settings
    from varcon.runtime.distributed import setup_distributed

    encoder = s.models[slot]
    register_synthetic(s.batch * s.breakdown_steps)
    ctx = setup_distributed(s.device)
    device = ctx.device
    spent = {k: 0.0 for k in SECTIONS}
    warm = max(1, s.breakdown_steps // 3)
    with tempfile.TemporaryDirectory() as tmp, \
            torch_settings(deterministic=False, device=device):
        cfg = _config(s, encoder, Path(tmp) / "run", compile_=False, epochs=1,
                      steps=s.breakdown_steps)
        run = build_run_state(cfg, ctx)
        model = wrap_for_training(run)
        model.train()
        run.sampler.set_epoch(0, 0)
        reset_peak(device)
        batches = iter(run.loader)
        timed = 0
        for step in range(min(s.breakdown_steps, run.steps_per_epoch)):
            marks = [time.perf_counter()]
            images, labels = next(batches)
            images = run.train_set.finish(images.to(device, non_blocking=True))
            labels = labels.to(device, non_blocking=True)
            if images.dim() == 5:
                labels = labels.repeat_interleave(images.shape[1])
                images = images.flatten(0, 1)
            images = images.contiguous(memory_format=run.memory_format)
            sync(device)
            marks.append(time.perf_counter())
            with torch.autocast(device.type, dtype=run.amp_dtype,
                                enabled=run.amp_dtype is not None):
                outputs = model(images)
            sync(device)
            marks.append(time.perf_counter())
            out = run.method.compute(run.loss_fn, outputs, labels)
            sync(device)
            marks.append(time.perf_counter())
            run.optimizer.zero_grad(set_to_none=True)
            run.scaler.scale(out.loss).backward()
            sync(device)
            marks.append(time.perf_counter())
            run.scaler.step(run.optimizer)
            run.scaler.update()
            sync(device)
            marks.append(time.perf_counter())
            if step >= warm:
                timed += 1
                for k, a, b in zip(SECTIONS, marks, marks[1:], strict=False):
                    spent[k] += b - a
        del batches
    total = sum(spent.values())
    return {"model": slot, "encoder": encoder, "timed_steps": timed,
            "step_ms": round(1e3 * total / timed, 2),
            "fractions": {k: round(v / total, 4) for k, v in spent.items()},
            "ms": {k: round(1e3 * v / timed, 2) for k, v in spent.items()},
            "peak_gb": peak_gb(device), "batch": s.batch, "workers": s.workers}
