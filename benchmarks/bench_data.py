"""Data-pipeline throughput: the authors' pipeline vs varcon's, on a CIFAR-10 JPEG tree.

authors: torchvision.datasets.ImageFolder (PIL decode per image, every epoch) + v1
    transforms (RandomResizedCrop(32, scale=(0.2, 1)), RandomHorizontalFlip,
    RandomApply([ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8), RandomGrayscale(0.2),
    ToTensor, Normalize), two views per image (SupCon's TwoCropTransform).
varcon: build_dataset("imagefolder") (uint8 tensor cache, decoded once) +
    MultiView(SimAugment(32)) (v2 transforms on uint8 tensors), two views per image.
    The DataLoader hands each batch to TransformedDataset.__getitems__, which draws each
    image's parameters separately and does the pixel work for the batch at once.
varcon, seeded: the same with (index, seed) keys from EpochBatchSampler.
varcon per-image: v2 transforms called per image (the engine's earlier path, shown for
    comparison).

All use a DataLoader with the same batch size and worker count. Throughput counts source
images per second (each yields two views); each measurement starts fresh workers, skips
warm-up batches (worker start-up included), then times a fixed number of batches. The
pipelines run in interleaved rounds (the machine may be shared) and the median is shown.

    tar xzf ../shared/data/cifar10-jpeg.tar.gz -C /tmp
    python benchmarks/bench_data.py --root /tmp/cifar10 --batches 20 --rounds 3 --workers 2
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time

import torch
from torch.utils.data import DataLoader
from torchvision import datasets as tv_datasets
from torchvision import transforms as T

from varcon.data import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    MultiView,
    SimAugment,
    TransformedDataset,
    build_dataset,
)
from varcon.data.sampling import EpochBatchSampler


class TwoCropTransform:
    """SupCon's: two independent draws of the same transform."""

    def __init__(self, transform):
        self.transform = transform

    def __call__(self, x):
        return [self.transform(x), self.transform(x)]


def authors_loader(root: str, batch_size: int, workers: int) -> DataLoader:
    tf = T.Compose([
        T.RandomResizedCrop(size=32, scale=(0.2, 1.0)),
        T.RandomHorizontalFlip(),
        T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
        T.RandomGrayscale(p=0.2),
        T.ToTensor(),
        T.Normalize(mean=CIFAR10_MEAN, std=CIFAR10_STD),
    ])
    ds = tv_datasets.ImageFolder(os.path.join(root, "train"), transform=TwoCropTransform(tf))
    return DataLoader(ds, batch_size=batch_size, shuffle=True, num_workers=workers,
                      drop_last=True, persistent_workers=workers > 0)


def varcon_dataset(root: str, cache_dir: str | None):
    t0 = time.perf_counter()
    ds = build_dataset("imagefolder", root, "train", cache="auto", cache_dir=cache_dir)
    return ds, time.perf_counter() - t0


def varcon_loader(ds, batch_size: int, workers: int) -> DataLoader:
    """TransformedDataset + MultiView(SimAugment): DataLoader batches go through
    ``__getitems__`` (one parameter draw per image, batched pixel work)."""
    tf = MultiView(SimAugment(32, mean=CIFAR10_MEAN, std=CIFAR10_STD), n_views=2)
    return DataLoader(TransformedDataset(ds, tf), batch_size=batch_size, shuffle=True,
                      num_workers=workers, drop_last=True, persistent_workers=False)


def varcon_seeded_loader(ds, batch_size: int, workers: int) -> DataLoader:
    """The same, fed (index, seed) keys by EpochBatchSampler (per-item seeded views)."""
    tf = MultiView(SimAugment(32, mean=CIFAR10_MEAN, std=CIFAR10_STD), n_views=2)
    return DataLoader(TransformedDataset(ds, tf),
                      batch_sampler=EpochBatchSampler(len(ds), batch_size, seed=0),
                      num_workers=workers)


def per_image_loader(ds, batch_size: int, workers: int) -> DataLoader:
    """Per-image v2 transforms (a plain callable hides apply_batch from the fast path)."""
    views = MultiView(SimAugment(32, mean=CIFAR10_MEAN, std=CIFAR10_STD), n_views=2)
    return DataLoader(TransformedDataset(ds, lambda img: views(img)),
                      batch_sampler=EpochBatchSampler(len(ds), batch_size, seed=0),
                      num_workers=workers)


def measure(loader: DataLoader, warmup: int, batches: int) -> tuple[float, tuple[int, ...]]:
    """Images/s over ``batches`` batches after ``warmup`` batches (fresh workers)."""
    it = iter(loader)
    for _ in range(warmup):
        next(it)
    t0 = time.perf_counter()
    n = 0
    for _ in range(batches):
        views, labels = next(it)
        n += len(labels)
    dt = time.perf_counter() - t0
    shape = tuple(torch.stack(views, 1).shape) if isinstance(views, list) else tuple(views.shape)
    del it  # stop the workers before the next pipeline runs
    return n / dt, shape


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", default="/tmp/cifar10", help="ImageFolder root (train/ inside)")
    ap.add_argument("--batches", type=int, default=40, help="timed batches per pipeline")
    ap.add_argument("--warmup", type=int, default=3, help="untimed batches first")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--cache-dir", default=None,
                    help="decoded-image cache (default: a fresh temporary folder)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved repetitions")
    ap.add_argument("--skip-authors", action="store_true")
    args = ap.parse_args()
    if not os.path.isdir(os.path.join(args.root, "train")):
        raise SystemExit(f"{args.root}/train not found: tar xzf ../shared/data/"
                         "cifar10-jpeg.tar.gz -C /tmp, then --root /tmp/cifar10")

    print(f"torch {torch.__version__}, torchvision {__import__('torchvision').__version__}, "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus; "
          f"batch {args.batch_size}, workers {args.workers}, {args.warmup} warm-up + "
          f"{args.batches} timed batches, 2 views per image")
    with tempfile.TemporaryDirectory() as tmp:
        cache_dir = args.cache_dir or tmp
        ds, t_build = varcon_dataset(args.root, cache_dir)
        _, t_load = varcon_dataset(args.root, cache_dir)
        print(f"varcon cache: decode + write {t_build:.1f} s (once), reload {t_load:.2f} s; "
              f"{len(ds)} images {tuple(ds.images.shape)}")
        pipelines = [
            ("authors (ImageFolder+PIL, v1 per image)",
             lambda: authors_loader(args.root, args.batch_size, args.workers)),
            ("varcon (uint8 cache, MultiView(SimAugment), batched)",
             lambda: varcon_loader(ds, args.batch_size, args.workers)),
            ("varcon, seeded (EpochBatchSampler keys, batched)",
             lambda: varcon_seeded_loader(ds, args.batch_size, args.workers)),
            ("varcon per-image v2 (earlier engine path)",
             lambda: per_image_loader(ds, args.batch_size, args.workers)),
        ]
        if args.skip_authors:
            pipelines = pipelines[1:]
        rates: dict[str, list[float]] = {name: [] for name, _ in pipelines}
        shapes: dict[str, tuple[int, ...]] = {}
        for r in range(args.rounds):  # interleaved rounds: load changes hit all alike
            for name, make in pipelines:
                rate, shapes[name] = measure(make(), args.warmup, args.batches)
                rates[name].append(rate)
                print(f"round {r + 1}: {name}: {rate:,.0f} images/s", flush=True)
    base = statistics.median(rates[pipelines[0][0]]) if not args.skip_authors else None
    print(f"\n| pipeline | images/s (median of {args.rounds}) | all rounds | batch | vs authors |"
          "\n|---|---:|---|---|---:|")
    for name, _ in pipelines:
        med = statistics.median(rates[name])
        ratio = f"{med / base:.2f}x" if base else "-"
        runs = ", ".join(f"{v:,.0f}" for v in rates[name])
        print(f"| {name} | {med:,.0f} | {runs} | {list(shapes[name])} | {ratio} |")

if __name__ == "__main__":
    main()
