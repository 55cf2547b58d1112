"""Corruption generation throughput: images/s per corruption, one process, one thread.

For each of the 19 corruptions (15 ImageNet-C + 4 extra) at one severity:

* varcon: ``varcon.evaluation.corruptions.corrupt(image, name, severity, seed=i)`` (what
  ``CorruptedDataset`` calls per item: seeded, global RNG saved and restored);
* library: ``imagecorruptions.corrupt(image, corruption_name=name, severity=severity)``
  (unseeded), to show the wrapper's overhead.

Images: CIFAR-10 validation JPEGs (32 x 32) from the shared archive when ``--root`` holds a
``val/`` ImageFolder tree, otherwise generated smooth images; the 224 x 224 run uses the same
images upscaled (bicubic). Every corruption is called once before timing (glass_blur's numba
kernel compiles on its first call; that time is printed separately). The corruptions are
interleaved in ``--rounds`` rounds and the median rate is reported. OpenCV is limited to one
thread (``--threads``) so that the rates are per core, as in a DataLoader worker.

    tar xzf ../shared/data/cifar10-jpeg.tar.gz -C /tmp cifar10/val
    python benchmarks/bench_corruptions.py --root /tmp/cifar10 --n 300 --n-large 20 --rounds 3
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
from PIL import Image

from varcon.evaluation.corruptions import CORRUPTIONS, EXTRA_CORRUPTIONS, corrupt


def load_images(root: str | None, n: int) -> tuple[list[np.ndarray], str]:
    """``n`` uint8 [32, 32, 3] images: CIFAR-10 val JPEGs (round-robin over classes) or
    generated ones."""
    val = Path(root) / "val" if root else None
    if val is not None and val.is_dir():
        classes = sorted(d for d in val.iterdir() if d.is_dir())
        files = [sorted(c.glob("*.jpg")) for c in classes]
        picked = [files[i % len(files)][i // len(files)] for i in range(n)]
        return [np.asarray(Image.open(p).convert("RGB")) for p in picked], f"{val} (JPEG)"
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:32, 0:32] / 31
    images = []
    for _ in range(n):
        a, b, c = rng.uniform(0, 1, 3)
        im = np.stack([a * x + (1 - a) * y, b * y, c * (1 - x)], -1) * 180 + 40
        cy, cx, r = rng.uniform(0.2, 0.8, 3) * [1, 1, 0.3]
        im[(x - cx) ** 2 + (y - cy) ** 2 < r ** 2] = rng.uniform(0, 255, 3)
        images.append(im.astype(np.uint8))
    return images, "generated (no --root/val)"


def time_rates(images: list[np.ndarray], names: list[str], severity: int, rounds: int
               ) -> tuple[dict[str, list[float]], dict[str, list[float]], dict[str, float]]:
    """images/s per name for varcon's corrupt and the library's, per round; first-call time."""
    import imagecorruptions

    first = {}
    for name in names:  # warm-up (numba compilation, lazy imports, frost textures)
        t = time.perf_counter()
        corrupt(images[0], name, severity, seed=0)
        first[name] = time.perf_counter() - t
        imagecorruptions.corrupt(images[0], corruption_name=name, severity=severity)
    ours: dict[str, list[float]] = {n: [] for n in names}
    lib: dict[str, list[float]] = {n: [] for n in names}
    for _ in range(rounds):
        for name in names:
            t = time.perf_counter()
            for i, im in enumerate(images):
                corrupt(im, name, severity, seed=i)
            ours[name].append(len(images) / (time.perf_counter() - t))
            t = time.perf_counter()
            for im in images:
                imagecorruptions.corrupt(im, corruption_name=name, severity=severity)
            lib[name].append(len(images) / (time.perf_counter() - t))
    return ours, lib, first


def table(ours: dict[str, list[float]], lib: dict[str, list[float]], size: int) -> str:
    rows = [f"| corruption | {size}px varcon images/s (median) | rounds | library images/s "
            "| varcon / library |", "|---|---:|---|---:|---:|"]
    for name in ours:
        o, li = statistics.median(ours[name]), statistics.median(lib[name])
        rounds = ", ".join(f"{v:,.0f}" for v in ours[name])
        rows.append(f"| {name} | {o:,.0f} | {rounds} | {li:,.0f} | {o / li:.2f} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="/tmp/cifar10",
                        help="CIFAR-10 ImageFolder tree with val/ (else generated images)")
    parser.add_argument("--n", type=int, default=300, help="32 x 32 images per corruption")
    parser.add_argument("--n-large", type=int, default=20,
                        help="224 x 224 images per corruption (0: skip)")
    parser.add_argument("--severity", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="OpenCV threads")
    args = parser.parse_args()

    import cv2

    cv2.setNumThreads(args.threads)
    names = list(CORRUPTIONS + EXTRA_CORRUPTIONS)
    images, source = load_images(args.root, args.n)
    print(f"# {platform.machine()} {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"numpy {np.__version__}, opencv {cv2.__version__} ({args.threads} thread); "
          f"images: {source}; severity {args.severity}; load {os.getloadavg()[0]:.2f}")
    ours, lib, first = time_rates(images, names, args.severity, args.rounds)
    print(table(ours, lib, 32))
    slow_first = {n: t for n, t in first.items() if t > 0.5}
    print(f"first call (compilation etc.): {slow_first or 'none above 0.5 s'}")
    if args.n_large > 0:
        large = [np.asarray(Image.fromarray(im).resize((224, 224), Image.BICUBIC))
                 for im in images[: args.n_large]]
        ours_l, lib_l, _ = time_rates(large, names, args.severity, args.rounds)
        print(table(ours_l, lib_l, 224))
    print(f"# load at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
