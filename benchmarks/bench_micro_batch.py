"""Peak memory and step time: the full batch against ``train.micro_batch`` (gradient caching).

One training step is what the engine does (``varcon.engine.micro_batch.encode_for_loss``,
the loss once on the whole batch, backward, SGD) on a CIFAR-style ResNet-18 at reduced
width with synthetic 32 px images and 2 views per image. Each setting runs in a fresh
subprocess, so its peak memory is its own: the process's peak resident set
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``) on CPU, ``torch.cuda.max_memory_allocated``
on CUDA. The baseline is the same figure just before the first step (interpreter, torch,
network, optimiser and the batch itself); peak minus baseline is what the step needs.

    python benchmarks/bench_micro_batch.py                       # batch 1024, chunks of 128
    python benchmarks/bench_micro_batch.py --batch-size 512 --micro-batch 64 128 --steps 3
    python benchmarks/bench_micro_batch.py --device cuda --width 64 --batch-size 4096
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from typing import Any

import torch

from varcon.engine.micro_batch import encode_for_loss
from varcon.losses import VarConLoss
from varcon.models import build_network


def child(args: argparse.Namespace) -> dict[str, Any]:
    """One setting, in this process: returns baseline/peak memory (MiB) and step times (s)."""
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    net = build_network("varcon", "resnet18", num_classes=args.classes, in_channels=3,
                        image_size=32, width=args.width).to(device).train()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    loss_fn = VarConLoss(0.1, 0.02, num_classes=args.classes)
    rows = args.batch_size * args.views
    images = torch.randn(rows, 3, 32, 32, device=device)
    labels = torch.randint(0, args.classes, (args.batch_size,), device=device)
    labels = labels.repeat_interleave(args.views)
    chunk_rows = args.micro * args.views

    def memory() -> float:
        if device.type == "cuda":
            return torch.cuda.max_memory_allocated(device) / 2**20
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux

    baseline = memory()
    times = []
    for _ in range(args.warmup + args.steps):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        outputs, backward = encode_for_loss(net, images, chunk_rows)
        loss = loss_fn(outputs, labels)
        optimizer.zero_grad(set_to_none=True)
        backward(loss)
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t0)
        del outputs, backward, loss
    return {"baseline_mib": baseline, "peak_mib": memory(), "times": times[args.warmup:]}


def run_setting(args: argparse.Namespace, micro: int) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", "--micro", str(micro)]
    for key in ("batch_size", "width", "views", "classes", "steps", "warmup", "threads",
                "device"):
        cmd += [f"--{key.replace('_', '-')}", str(getattr(args, key))]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode:
        raise SystemExit(f"setting micro_batch={micro} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=1024, help="images per step")
    parser.add_argument("--micro-batch", type=int, nargs="+", default=[128],
                        help="images per chunk (each compared with the full batch)")
    parser.add_argument("--width", type=int, default=16, help="ResNet-18 width (64: standard)")
    parser.add_argument("--views", type=int, default=2)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per setting")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--micro", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return
    for k in args.micro_batch:
        if args.batch_size % k:
            parser.error(f"--micro-batch {k} must divide --batch-size {args.batch_size}")

    unit = "GPU max_memory_allocated" if args.device.startswith("cuda") else "peak RSS"
    print(f"ResNet-18 width {args.width}, 32 px, batch {args.batch_size} images x {args.views} "
          f"views, VarCon, SGD; {args.steps} timed steps after {args.warmup}; "
          f"{args.threads} threads on {args.device}; memory: {unit} (MiB)\n")
    print("| setting | baseline | peak | peak - baseline | step s (median) | steps s | "
          "time vs full |")
    print("|---|---:|---:|---:|---:|---|---:|")
    full_time = None
    for k in [0, *args.micro_batch]:
        r = run_setting(args, k)
        median = statistics.median(r["times"])
        full_time = full_time or median
        name = "full batch" if k == 0 else f"micro_batch={k} ({args.batch_size // k} chunks)"
        print(f"| {name} | {r['baseline_mib']:,.0f} | {r['peak_mib']:,.0f} | "
              f"{r['peak_mib'] - r['baseline_mib']:,.0f} | {median:.2f} | "
              f"{', '.join(f'{t:.2f}' for t in r['times'])} | {median / full_time:.2f}x |",
              flush=True)
    print(f"\nload average after the run: {' '.join(open('/proc/loadavg').read().split()[:3])}"
          if os.path.exists("/proc/loadavg") else "")


if __name__ == "__main__":
    main()
