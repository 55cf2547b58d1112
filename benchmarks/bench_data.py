"""Data-pipeline throughput: the authors' pipeline vs varcon's, CIFAR-size or ImageNet-size.

CIFAR mode (``--image-size 32``, default), on a CIFAR-10 JPEG tree:

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

ImageNet mode (``--image-size 224``), on an ImageFolder tree of large JPEGs (``--root``,
or a generated one: ``--tree-size 500x375``, 10 classes x ``--tree-count 160`` images,
made once in ``--tree-dir``):

authors: as above at 224 px, ImageNet mean/std.
varcon engine, GPU run: what ``varcon pretrain`` builds for the imagenet100 config
    (``build_dataset(cache="none")``, ``MultiView(build_transform("simaugment", 224))``,
    ``EpochBatchSampler``, ``TransformedDataset.collate``) with ``uint8_views=True``, as
    the engine sets it on a CUDA device: uint8 views leave the workers and are normalised
    on the GPU (not timed here).
varcon engine, CPU run: the same with float32 views normalised in the workers (the
    engine's setting on a CPU device).
varcon before issue 11: full decode per item, then the batched float32 SimAugment of
    ``varcon.data.batched`` on the whole batch (the engine path before this change).

All use a DataLoader with the same batch size and worker count. Throughput counts source
images per second (each yields two views); each measurement starts fresh workers, skips
warm-up batches (worker start-up included), then times a fixed number of batches. The
pipelines run in interleaved rounds (the machine may be shared; ``os.getloadavg()`` is
printed with every measurement) and the median is shown.

    tar xzf ../shared/data/cifar10-jpeg.tar.gz -C /tmp
    python benchmarks/bench_data.py --root /tmp/cifar10 --batches 20 --rounds 3 --workers 2
    python benchmarks/bench_data.py --image-size 224 --batch-size 64 --workers 2 --rounds 3
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as Fnn
from PIL import Image
from torch.utils.data import DataLoader
from torchvision import datasets as tv_datasets
from torchvision import transforms as T

from varcon.data import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    MultiView,
    SimAugment,
    TransformedDataset,
    build_dataset,
    build_transform,
)
from varcon.data.batched import apply_simaugment_batch, draw_simaugment_params
from varcon.data.sampling import EpochBatchSampler


class TwoCropTransform:
    """SupCon's: two independent draws of the same transform."""

    def __init__(self, transform):
        self.transform = transform

    def __call__(self, x):
        return [self.transform(x), self.transform(x)]


def authors_loader(root: str, batch_size: int, workers: int, size: int = 32,
                   mean=CIFAR10_MEAN, std=CIFAR10_STD) -> DataLoader:
    tf = T.Compose([
        T.RandomResizedCrop(size=size, scale=(0.2, 1.0)),
        T.RandomHorizontalFlip(),
        T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
        T.RandomGrayscale(p=0.2),
        T.ToTensor(),
        T.Normalize(mean=mean, std=std),
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


# --------------------------------------------------------------------------- ImageNet size


def make_tree(root: str, size: tuple[int, int], classes: int = 10, per_class: int = 160
              ) -> None:
    """An ImageFolder tree of ``classes x per_class`` JPEGs (quality 90) of size W x H.

    Content: smooth random structure at four scales plus pixel noise (sigma 18), which
    gives files of ~95 KB at 500x375 (ImageNet's training JPEGs average ~110 KB):
    decoding costs what it costs on photographs of that size. Deterministic (seed 0).
    """
    width, height = size
    gen = torch.Generator().manual_seed(0)
    for c in range(classes):
        folder = os.path.join(root, "train", f"class{c:02d}")
        os.makedirs(folder, exist_ok=True)
        for k in range(per_class):
            img = torch.full((1, 3, height, width), 50.0)
            for cells, amp in ((4, 80.0), (16, 40.0), (64, 25.0), (160, 20.0)):
                low = torch.rand(1, 3, max(2, cells * height // width), cells, generator=gen)
                img += amp * Fnn.interpolate(low, size=(height, width), mode="bicubic",
                                             align_corners=False)
            img += 18.0 * torch.randn(img.shape, generator=gen)
            arr = img[0].clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
            Image.fromarray(np.ascontiguousarray(arr)).save(
                os.path.join(folder, f"{k:04d}.jpg"), quality=90)
    # validation split: one image per class, so that the tree is a complete ImageFolder
    for c in range(classes):
        folder = os.path.join(root, "val", f"class{c:02d}")
        os.makedirs(folder, exist_ok=True)
        src = os.path.join(root, "train", f"class{c:02d}", "0000.jpg")
        with open(src, "rb") as f, open(os.path.join(folder, "0000.jpg"), "wb") as g:
            g.write(f.read())


class _BatchedFloatSimAugment:
    """The pre-issue-11 engine path for large images: the whole batch through
    draw_simaugment_params + apply_simaugment_batch (float32, batched)."""

    def __init__(self, sim: SimAugment, n_views: int) -> None:
        self.sim, self.n_views = sim, n_views

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        return self.apply_batch(image.unsqueeze(0))[0]

    def apply_batch(self, images, generators=None):
        sim, v = self.sim, self.n_views
        gens = None if generators is None else [g for g in generators for _ in range(v)]
        reps = images.repeat_interleave(v, dim=0)
        params = draw_simaugment_params(
            len(reps), images.shape[2], images.shape[3], crop_scale=sim.crop_scale,
            hflip_p=sim.hflip_p, jitter=sim.jitter, jitter_p=sim.jitter_p,
            grayscale_p=sim.grayscale_p, generators=gens)
        out = apply_simaugment_batch(reps, params, image_size=sim.image_size,
                                     jitter=sim.jitter, mean=sim.mean, std=sim.std)
        return out.view(len(images), v, *out.shape[1:])


def engine_loader(ds, size: int, batch_size: int, workers: int, *, uint8_views: bool,
                  **params) -> DataLoader:
    """What varcon.engine.pretrain builds for an ImageNet config (cache none)."""
    tf = MultiView(build_transform("simaugment", size, IMAGENET_MEAN, IMAGENET_STD, **params),
                   n_views=2)
    train_set = TransformedDataset(ds, tf, uint8_views=uint8_views)
    return DataLoader(train_set, batch_sampler=EpochBatchSampler(len(ds), batch_size, seed=0),
                      num_workers=workers, collate_fn=TransformedDataset.collate)


def before_loader(ds, size: int, batch_size: int, workers: int) -> DataLoader:
    sim = SimAugment(size, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    return DataLoader(TransformedDataset(ds, _BatchedFloatSimAugment(sim, 2)),
                      batch_sampler=EpochBatchSampler(len(ds), batch_size, seed=0),
                      num_workers=workers)


def profile_stages(ds, size: int, images: int = 128) -> None:
    """CPU time per source image (two views) of each stage, in this process, one thread:
    what one DataLoader worker spends. Minimum of three passes over ``images`` files."""
    from varcon.data.views import normalize_uint8

    torch.set_num_threads(1)
    paths = ds.paths[:images]
    pils = [Image.open(p).convert("RGB") for p in paths]
    sim = SimAugment(size, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    crop = T.RandomResizedCrop(size, scale=(0.2, 1.0))
    jitter = T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8)
    gray = T.RandomGrayscale(0.2)
    finish = T.Compose([T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    crops = [crop(im) for im in pils for _ in range(2)]
    jittered = [jitter(c) for c in crops]
    encoded = [ds.encoded(i) for i in range(len(paths))]
    decoded = [e.decode() for e in encoded]
    gens = [torch.Generator().manual_seed(i) for i in range(len(paths))]
    rows = [sim._draw_rows(2, *e.size, [g, g]) for e, g in zip(encoded, gens, strict=True)]
    u8 = torch.empty(2, 3, size, size, dtype=torch.uint8)
    f32 = torch.empty(2, 3, size, size)
    batch = torch.stack(decoded[:64])  # the before-path works on whole batches
    before = _BatchedFloatSimAugment(sim, 2)
    stages: list[tuple[str, Callable[[], object], int]] = [
        ("authors: PIL decode", lambda: [Image.open(p).convert("RGB") for p in paths], 1),
        ("authors: RandomResizedCrop x2", lambda: [crop(im) for im in pils for _ in range(2)],
         1),
        ("authors: ColorJitter (p 0.8) x2", lambda: [jitter(c) for c in crops], 1),
        ("authors: RandomGrayscale x2", lambda: [gray(c) for c in jittered], 1),
        ("authors: ToTensor + Normalize x2", lambda: [finish(c) for c in jittered], 1),
        ("varcon before: torchvision decode", lambda: [ds[i][0] for i in range(len(paths))],
         1),
        ("varcon before: batched float32 SimAugment x2 (per image of a batch of 64)",
         lambda: before.apply_batch(batch), len(paths) // 64),
        ("varcon: read + JPEG header", lambda: [ds.encoded(i) for i in range(len(paths))], 1),
        ("varcon: draw both views' parameters",
         lambda: [sim._draw_rows(2, *e.size, [g, g]) for e, g in zip(encoded, gens,
                                                                       strict=True)], 1),
        ("varcon: decode (full scale here)", lambda: [e.decode() for e in encoded], 1),
        ("varcon: crop + resize + flip + jitter + grayscale + round x2 (uint8 kernel)",
         lambda: [sim.render(d, r, out=u8) for d, r in zip(decoded, rows, strict=True)], 1),
        ("varcon: normalise x2 (CPU runs; on the device in GPU runs)",
         lambda: [normalize_uint8(u8, IMAGENET_MEAN, IMAGENET_STD, out=f32)
                  for _ in paths], 1),
    ]
    print(f"\nCPU time per source image (2 views), one thread, {len(paths)} files:")
    print("| stage | ms per image |\n|---|---:|")
    for name, fn, repeat in stages:
        best = float("inf")
        for _ in range(3):
            t0 = time.thread_time()
            for _ in range(repeat):
                fn()
            best = min(best, time.thread_time() - t0)
        n = len(paths) if repeat == 1 else 64 * repeat
        print(f"| {name} | {best / n * 1e3:.2f} |", flush=True)


# --------------------------------------------------------------------------- measuring


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
    if isinstance(views, list):
        views = torch.stack(views, 1)
    shape = (*views.shape, str(views.dtype).replace("torch.", ""))
    del it  # stop the workers before the next pipeline runs
    return n / dt, shape


def run_rounds(pipelines: list[tuple[str, Callable[[], DataLoader]]], rounds: int,
               warmup: int, batches: int) -> None:
    rates: dict[str, list[float]] = {name: [] for name, _ in pipelines}
    shapes: dict[str, tuple] = {}
    loads = [os.getloadavg()[0]]
    for r in range(rounds):  # interleaved rounds: load changes hit all alike
        for name, make in pipelines:
            rate, shapes[name] = measure(make(), warmup, batches)
            rates[name].append(rate)
            load = os.getloadavg()
            loads.append(load[0])
            print(f"round {r + 1}: {name}: {rate:,.0f} images/s (load average "
                  f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f})", flush=True)
    base = statistics.median(rates[pipelines[0][0]])
    print(f"\nload average (1 min) during the run: {min(loads):.2f} to {max(loads):.2f}, "
          f"median {statistics.median(loads):.2f}")
    print(f"\n| pipeline | images/s (median of {rounds}) | all rounds | batch | vs first |"
          "\n|---|---:|---|---|---:|")
    for name, _ in pipelines:
        med = statistics.median(rates[name])
        runs = ", ".join(f"{v:,.0f}" for v in rates[name])
        print(f"| {name} | {med:,.0f} | {runs} | {list(shapes[name])} | {med / base:.2f}x |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--image-size", type=int, default=32,
                    help="32: CIFAR mode; > 64: ImageNet mode (large JPEGs, decoded per item)")
    ap.add_argument("--root", default=None,
                    help="ImageFolder root (train/ inside). CIFAR mode: default /tmp/cifar10; "
                    "ImageNet mode: default a generated tree in --tree-dir")
    ap.add_argument("--tree-dir", default=os.path.join(tempfile.gettempdir(),
                                                       "varcon-bench-jpeg"),
                    help="ImageNet mode without --root: where the generated tree goes")
    ap.add_argument("--tree-size", default="500x375", help="generated JPEGs' WxH")
    ap.add_argument("--tree-count", type=int, default=160,
                    help="generated JPEGs per class (10 classes)")
    ap.add_argument("--batches", type=int, default=None,
                    help="timed batches per pipeline (default 40 CIFAR, 15 ImageNet)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed batches first")
    ap.add_argument("--batch-size", type=int, default=None, help="default 256 CIFAR, 64 ImageNet")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--cache-dir", default=None,
                    help="decoded-image cache (default: a fresh temporary folder)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved repetitions")
    ap.add_argument("--skip-authors", action="store_true")
    ap.add_argument("--skip-before", action="store_true",
                    help="ImageNet mode: leave out the pre-issue-11 path")
    ap.add_argument("--compare-reduced", action="store_true",
                    help="ImageNet mode: add the GPU-run path with reduced_decode=False")
    ap.add_argument("--profile", action="store_true",
                    help="ImageNet mode: only the per-stage CPU time of one worker")
    args = ap.parse_args()
    imagenet = args.image_size > 64
    batch_size = args.batch_size or (64 if imagenet else 256)
    batches = args.batches or (15 if imagenet else 40)
    root = args.root or (None if imagenet else "/tmp/cifar10")

    print(f"torch {torch.__version__}, torchvision {__import__('torchvision').__version__}, "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus; "
          f"batch {batch_size}, workers {args.workers}, {args.warmup} warm-up + "
          f"{batches} timed batches, 2 views per image, {args.image_size} px")
    if imagenet:
        if root is None:
            width, height = (int(v) for v in args.tree_size.lower().split("x"))
            root = os.path.join(args.tree_dir, f"{width}x{height}-{args.tree_count}")
            if not os.path.isdir(os.path.join(root, "train")):
                t0 = time.perf_counter()
                make_tree(root, (width, height), per_class=args.tree_count)
                print(f"generated {root} in {time.perf_counter() - t0:.0f} s")
        if not os.path.isdir(os.path.join(root, "train")):
            raise SystemExit(f"{root}/train not found")
        ds = build_dataset("imagefolder", root, "train", cache="none",
                           image_size=args.image_size)
        sizes = [os.path.getsize(p) for p in ds.paths]
        with Image.open(ds.paths[0]) as im:
            first = im.size
        print(f"tree {root}: {len(ds)} JPEGs, first {first[0]}x{first[1]}, mean file size "
              f"{statistics.mean(sizes) / 1024:.0f} KiB")
        size, bs, w = args.image_size, batch_size, args.workers
        if args.profile:
            profile_stages(ds, size)
            return
        pipelines = [
            ("authors (ImageFolder + PIL + v1 transforms per image, float32)",
             lambda: authors_loader(root, bs, w, size, IMAGENET_MEAN, IMAGENET_STD)),
            ("varcon engine, GPU run (uint8 views, normalised on the device)",
             lambda: engine_loader(ds, size, bs, w, uint8_views=True)),
            ("varcon engine, CPU run (float32 views normalised in the workers)",
             lambda: engine_loader(ds, size, bs, w, uint8_views=False)),
        ]
        if args.compare_reduced:
            pipelines.append(("varcon engine, GPU run, reduced_decode=False",
                              lambda: engine_loader(ds, size, bs, w, uint8_views=True,
                                                    reduced_decode=False)))
        if not args.skip_before:
            pipelines.append(("varcon before issue 11 (full decode, batched float32 "
                              "SimAugment)", lambda: before_loader(ds, size, bs, w)))
        if args.skip_authors:
            pipelines = pipelines[1:]
        run_rounds(pipelines, args.rounds, args.warmup, batches)
        return

    if not os.path.isdir(os.path.join(root, "train")):
        raise SystemExit(f"{root}/train not found: tar xzf ../shared/data/"
                         "cifar10-jpeg.tar.gz -C /tmp, then --root /tmp/cifar10")
    with tempfile.TemporaryDirectory() as tmp:
        cache_dir = args.cache_dir or tmp
        ds, t_build = varcon_dataset(root, cache_dir)
        _, t_load = varcon_dataset(root, cache_dir)
        print(f"varcon cache: decode + write {t_build:.1f} s (once), reload {t_load:.2f} s; "
              f"{len(ds)} images {tuple(ds.images.shape)}")
        pipelines = [
            ("authors (ImageFolder+PIL, v1 per image)",
             lambda: authors_loader(root, batch_size, args.workers)),
            ("varcon (uint8 cache, MultiView(SimAugment), batched)",
             lambda: varcon_loader(ds, batch_size, args.workers)),
            ("varcon, seeded (EpochBatchSampler keys, batched)",
             lambda: varcon_seeded_loader(ds, batch_size, args.workers)),
            ("varcon per-image v2 (earlier engine path)",
             lambda: per_image_loader(ds, batch_size, args.workers)),
        ]
        if args.skip_authors:
            pipelines = pipelines[1:]
        run_rounds(pipelines, args.rounds, args.warmup, batches)


if __name__ == "__main__":
    main()
