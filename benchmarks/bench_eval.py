"""Evaluation commands: wall time of each on the CIFAR-10 ``val`` split with a small CNN.

Trains a small_cnn checkpoint for a few steps on CIFAR-10 JPEGs (``--root``: the unpacked
``cifar10/`` tree with ``train/`` and ``val/``; ``--per-class`` training images per class), then
times every evaluation command as a user runs it (``python -m varcon ...``, process start
included), once with features re-extracted by each command and once with
``eval.cache_features=true`` (the second command onwards skips the encoder). Prints a
Markdown table and the machine's load average, which matters on a shared VM.

    tar xzf ../shared/data/cifar10-jpeg.tar.gz -C /tmp
    python benchmarks/bench_eval.py --root /tmp/cifar10
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def varcon(*args: str) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "varcon", *args], capture_output=True,
                          text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"varcon {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True, help="cifar10/ tree with train/ and val/")
    parser.add_argument("--per-class", type=int, default=500)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--robustness-images", type=int, default=500)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench_eval_"))
    run = work / "run"
    common = [f"data.num_workers={args.workers}", "train.progress=off"]
    try:
        t_pre = varcon(
            "pretrain", "--output-dir", str(run), "data.dataset=imagefolder",
            f"data.root={args.root}", f"data.per_class={args.per_class}",
            "data.augment_params={}", "model.encoder=small_cnn", "optim.epochs=1",
            "optim.warmup_epochs=0", "optim.batch_size=256", "train.max_steps_per_epoch=2",
            "linear.run_after_pretrain=false", *common)
        eval_args = [*common, "linear.augment=eval", "linear.epochs=30",
                     "fewshot.episodes=2000", f"robustness.max_images={args.robustness_images}"]
        commands = ["knn", "cluster", "fewshot", "linear", "robustness"]
        rows = []
        for cache in (False, True):
            out = work / ("cached" if cache else "plain")
            times = {}
            for command in commands:
                extra = ["eval.cache_features=true"] if cache else []
                times[command] = varcon(command, "--checkpoint", str(run), "--output-dir",
                                        str(out), *eval_args, *extra)
            rows.append((cache, times))
        shutil.copytree(work / "plain", run / "eval")
        t_fig = varcon("figures", str(run))
        t_rep = varcon("report", str(run), "--output", str(work / "report"))
        seconds = json.loads((work / "plain" / "robustness.json").read_text())["seconds"]
    finally:
        load = os.getloadavg()
        shutil.rmtree(work, ignore_errors=True)

    print(f"CIFAR-10 val (5,000 images) test split, {args.per_class * 10} training images, "
          f"small_cnn, {args.workers} workers; load average {load[0]:.1f} {load[1]:.1f} "
          f"{load[2]:.1f}; pretrain (2 steps) {t_pre:.1f} s\n")
    print("| command | seconds, each command encodes | seconds, eval.cache_features=true |")
    print("|---|---:|---:|")
    for command in commands:
        print(f"| varcon {command} | {rows[0][1][command]:.1f} | {rows[1][1][command]:.1f} |")
    print(f"| varcon figures | {t_fig:.1f} | |")
    print(f"| varcon report (1 run) | {t_rep:.1f} | |")
    print(f"\nrobustness: 15 corruptions x 5 severities x {args.robustness_images} images, "
          f"{seconds:.1f} s inside the command")


if __name__ == "__main__":
    main()
