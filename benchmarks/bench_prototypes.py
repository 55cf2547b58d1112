"""Cost of VarCon's class prototypes across steps (``prototypes="ema"``) against batch mode.

For every C the benchmark times forward + backward of the loss on features [N, D]
(float32, L2-normalised, requires_grad) with labels drawn uniformly from C classes, so a
batch of N = 256 rows holds at most 256 of them. Methods, measured in the same run:

    batch       VarConLoss() — the paper: softmax over the batch's classes (torch.unique)
    batch(nc)   VarConLoss(num_classes=C) — what the engine builds: static [N, C] shapes,
                absent classes masked out
    ema         VarConLoss(num_classes=C, prototypes="ema") in training mode, every class
                seen (the worst case: the softmax runs over all C), including the
                prototype update after the loss

Expected cost: ema and batch(nc) O(N*C*D) time and O(N*C) transient memory per step (the
[N, C] logits); ema keeps O(C*D) state (the prototypes). batch is O(N*C_batch*D).

Before timing, ema with no class seen yet is checked to give batch(nc)'s loss (it must,
bit for bit); a mismatch aborts the run.

Timing: torch.set_num_threads(--threads), --warmup untimed iterations per method, then
--repeats timed iterations with time.process_time() (--clock cpu, the default: this
process's CPU time, robust to other processes' load on a shared machine) or
time.perf_counter() (--clock wall). Methods are interleaved round-robin; the table reports
the median.

    python benchmarks/bench_prototypes.py
    python benchmarks/bench_prototypes.py --classes 1000 10000 100000 --repeats 10
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from varcon.losses import VarConLoss

METHODS = ("batch", "batch(nc)", "ema")


def make_batch(n: int, c: int, dim: int, seed: int) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    feats = F.normalize(torch.randn(n, dim, generator=g), dim=1).requires_grad_(True)
    return feats, torch.randint(0, c, (n,), generator=g)


def build(c: int, dim: int, seed: int) -> dict[str, VarConLoss]:
    """The three losses; ema's bank filled with random unit prototypes, all classes seen."""
    ema = VarConLoss(num_classes=c, prototypes="ema", embedding_dim=dim)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        ema.class_prototypes.copy_(F.normalize(torch.randn(c, dim, generator=g), dim=1))
        ema.class_seen.fill_(True)
    return {"batch": VarConLoss(), "batch(nc)": VarConLoss(num_classes=c), "ema": ema}


def check(c: int, feats: Tensor, labels: Tensor) -> None:
    """ema with nothing seen must equal batch(nc) exactly (loss and gradient)."""
    results = []
    for fn in (VarConLoss(num_classes=c, prototypes="ema"), VarConLoss(num_classes=c)):
        z = feats.detach().clone().requires_grad_(True)
        loss = fn(z, labels)
        loss.backward()
        results.append((loss.detach(), z.grad))
    (l1, g1), (l2, g2) = results
    if not (torch.equal(l1, l2) and torch.equal(g1, g2)):
        raise SystemExit(f"C={c}: ema with an empty bank differs from batch(nc): {l1} vs {l2}")


def step(fn: VarConLoss, feats: Tensor, labels: Tensor) -> None:
    feats.grad = None
    fn(feats, labels).backward()


def time_methods(
    methods: dict[str, VarConLoss], feats: Tensor, labels: Tensor, warmup: int, repeats: int,
    clock: Callable[[], float],
) -> dict[str, float]:
    """Median milliseconds of forward + backward per method, interleaved round-robin."""
    for _ in range(warmup):
        for fn in methods.values():
            step(fn, feats, labels)
    times: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(repeats):
        for name, fn in methods.items():
            start = clock()
            step(fn, feats, labels)
            times[name].append(clock() - start)
    return {name: 1e3 * statistics.median(ts) for name, ts in times.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=256, help="batch rows N")
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--classes", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    print(f"# bench_prototypes: {' '.join(sys.argv)}")
    print(f"# torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, {args.threads} thread(s), clock={args.clock}, "
          f"median of {args.repeats}")
    print("# load average at start: " + ", ".join(f"{x:.2f}" for x in os.getloadavg()))
    print("| C | classes in batch | batch ms | batch(nc) ms | ema ms | ema / batch | "
          "ema / batch(nc) | prototypes MB | [N, C] logits MB |")
    print("|---:" * 9 + "|")
    for c in args.classes:
        feats, labels = make_batch(args.n, c, args.dim, args.seed)
        check(c, feats, labels)
        methods = build(c, args.dim, args.seed)
        ms = time_methods(methods, feats, labels, args.warmup, args.repeats, clock)
        bank = methods["ema"]
        bank_mb = sum(t.numel() * t.element_size() for t in bank.state_dict().values()) / 2**20
        logits_mb = args.n * c * 4 / 2**20
        present = int(labels.unique().numel())
        print(f"| {c:,} | {present} | {ms['batch']:.2f} | {ms['batch(nc)']:.2f} | "
              f"{ms['ema']:.2f} | {ms['ema'] / ms['batch']:.1f} | "
              f"{ms['ema'] / ms['batch(nc)']:.2f} | {bank_mb:.1f} | {logits_mb:.1f} |",
              flush=True)
    print("# load average at end: " + ", ".join(f"{x:.2f}" for x in os.getloadavg()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
