"""Shared pieces of the GPU check: sizes (GPU or CPU dry run), timing, the synthetic
CIFAR-shaped dataset, and one JSON file per part."""

from __future__ import annotations

import json
import math
import os
import platform
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)
SYNTHETIC = "synthetic_cifar"


@dataclass(frozen=True)
class Sizes:
    """What each part runs: the GPU sizes, or toys for ``--cpu-dry-run``."""

    dry_run: bool
    device: str
    # loss benchmark
    loss_n: tuple[int, ...]
    loss_c: tuple[int, ...]
    loss_dim: int
    loss_warmup: int
    loss_repeats: int
    # end-to-end
    models: dict[str, str]  # slot (resnet18 / resnet50) -> encoder actually trained
    batch: int
    steps: int  # per epoch (ours: 2 epochs, the second timed); authors: warmup + steps
    authors_warmup: int
    workers: int
    breakdown_steps: int
    ours_amp: str  # train.amp of our runs
    authors_fp16: bool  # the authors' loop under fp16 autocast + GradScaler


def sizes(dry_run: bool) -> Sizes:
    if dry_run:
        # CPU autocast is emulated on most CPUs (slow): the dry run trains in float32
        return Sizes(True, "cpu", (256, 512), (10, 50), 32, 1, 2,
                     {"resnet18": "small_cnn", "resnet50": "small_cnn"},
                     batch=8, steps=2, authors_warmup=1, workers=1, breakdown_steps=3,
                     ours_amp="off", authors_fp16=False)
    workers = max(2, min(12, (os.cpu_count() or 4) - 2))
    return Sizes(False, "cuda", (4096, 16384, 65536), (100, 1000, 10000), 128, 2, 5,
                 {"resnet18": "resnet18", "resnet50": "resnet50"},
                 batch=512, steps=20, authors_warmup=5, workers=workers, breakdown_steps=12,
                 ours_amp="bf16", authors_fp16=True)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def peak_gb(device: torch.device) -> float | None:
    """Peak GPU memory allocated since :func:`reset_peak` (None on a CPU: not measured)."""
    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 2**30


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "torch": torch.__version__, "python": platform.python_version(),
        "cpu_count": os.cpu_count(), "cpu": platform.processor() or platform.machine(),
        "cuda_available": torch.cuda.is_available(),
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(gpu=props.name, gpu_memory_gb=round(props.total_memory / 2**30, 1),
                    cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version(),
                    bf16_supported=torch.cuda.is_bf16_supported())
    return info


def synthetic_images(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """n random CIFAR-shaped uint8 images [n, 3, 32, 32] and labels over 10 classes."""
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
    return images, torch.arange(n) % 10


def register_synthetic(n_train: int) -> None:
    """``data.dataset=synthetic_cifar``: random CIFAR-shaped images held in memory, as
    varcon holds CIFAR (the engine's data path is the same)."""
    from varcon.data import DatasetInfo, DatasetSpec, TensorImageDataset, register_dataset

    def load(root: Any, split: str, **options: Any) -> TensorImageDataset:
        n = n_train if split == "train" else 256
        images, labels = synthetic_images(n, seed=0 if split == "train" else 1)
        info = DatasetInfo(SYNTHETIC, 10, [str(k) for k in range(10)], 3, 32, CIFAR_MEAN,
                           CIFAR_STD)
        return TensorImageDataset(images, labels, info)

    register_dataset(DatasetSpec(name=SYNTHETIC, load=load, channels=3, mean=CIFAR_MEAN,
                                 std=CIFAR_STD, description="random CIFAR-shaped images"),
                     overwrite=True)


def finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def write_part(out_dir: Path, name: str, body: Callable[[], Any]) -> dict[str, Any]:
    """Run one part, write ``out_dir/logs/<name>.json`` whatever happens (an exception is
    recorded, not raised: the other parts still run)."""
    t0 = time.perf_counter()
    part: dict[str, Any] = {"part": name, "ok": False, "error": None, "results": []}
    try:
        part["results"] = body()
        part["ok"] = True
    except (Exception, SystemExit) as exc:  # reported; the other parts still run
        part["error"] = f"{type(exc).__name__}: {exc}"
        traceback.print_exc()
    part["seconds"] = round(time.perf_counter() - t0, 2)
    logs = out_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    (logs / f"{name}.json").write_text(json.dumps(part, indent=1, default=str))
    print(f"[{name}] {'ok' if part['ok'] else 'FAILED: ' + str(part['error'])} "
          f"in {part['seconds']} s", flush=True)
    return part
