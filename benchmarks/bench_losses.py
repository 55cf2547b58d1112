"""Loss speed and memory: varcon's VarCon/SupCon against the authors' algorithm and PML.

For every (N, C) the benchmark times forward + backward of the loss on features [N, D]
(float32, L2-normalised, requires_grad) with random labels over C classes (every class
present when N >= C), comparing in one run:

    ours        varcon.losses.VarConLoss(temperature=0.1, epsilon=0.02)
    ours(nc)    the same with num_classes=C (static shapes, no torch.unique)
    authors     the authors' published algorithm (one-hot, dense softmax/q/KL over
                [N, C]), re-implemented below in `authors_varcon`
    supcon      varcon.losses.SupConLoss(0.1)
    pml         pytorch_metric_learning.losses.SupConLoss(temperature=0.1), if importable

Before timing a configuration the losses are checked against each other: ours, ours(nc)
and authors must agree (rtol 1e-4, gradients too), and so must supcon and pml. A mismatch
aborts the run: a benchmark of a wrong loss is worthless.

Timing: torch.set_num_threads(--threads), --warmup untimed iterations per method, then
R timed iterations of time.perf_counter() (--clock wall, default) or time.process_time()
(--clock cpu: robust to other processes' load) around forward + backward (features.grad reset
to None before each). The methods are interleaved round-robin (repeat 1 of every method,
then repeat 2, ...) so that a change in machine load hits all of them alike. The table
reports the median. R is --repeats for N <= 1024 and max(3, --repeats // 2) above.

Peak memory: on CPU each method runs once more under torch.profiler(profile_memory=True);
the peak of the running sum of the CPU allocator's allocation/free records is the extra
memory forward + backward needed beyond the inputs (what the allocator hands out; the
process RSS is not used). On CUDA torch.cuda.max_memory_allocated minus the memory
allocated before the call (that path is not exercised in the committed results).

Configurations whose estimated footprint exceeds --max-gb are skipped ("skipped" in the
table). The estimate is deliberately generous: ours ~ 6 [N, C] float32 buffers, authors
~ 14, supcon ~ 8 [N, N], pml ~ 16 [N, N].

    python benchmarks/bench_losses.py                       # full grid
    python benchmarks/bench_losses.py --sizes 4096 --classes 1000 --repeats 20
    python benchmarks/bench_losses.py --scaling          # the log-log figure's grid, PNG + JSON

``--plot PNG`` draws time against N (one panel per C) and against C (at the largest N) on
log-log axes, with reference slopes: VarCon's cost grows as N*C, SupCon's as N^2. ``--json``
writes every timing. ``--scaling`` selects the figure's grid (N 256..8192 doubling, C 10, 100,
1000, 4000; no memory pass) and writes ``benchmarks/results/loss_scaling.{png,json}``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from varcon.losses import SupConLoss, VarConLoss

try:
    from pytorch_metric_learning.losses import SupConLoss as PMLSupConLoss
except ImportError:  # pragma: no cover - optional baseline
    PMLSupConLoss = None

TAU1 = 0.1
EPS = 0.02

# Estimated bytes per method, as multiples of 4 * N * C (VarCon) or 4 * N * N (SupCon).
_FOOTPRINT = {"ours": 6, "ours_nc": 6, "authors": 14, "supcon": 8, "pml": 16}


def authors_varcon(
    features: Tensor, labels: Tensor, tau1: float = TAU1, eps: float = EPS
) -> Tensor:
    """The authors' algorithm: dense one-hot, softmax, target q and KL over [N, C_batch].

    Written from the published description: classes of the batch via torch.unique,
    detached normalised class means as centroids, tau2 from the confidence (not
    detached), q from a one-hot mask, KL(q || p) with reduction "batchmean" plus the NLL.
    """
    n = features.shape[0]
    classes, col = torch.unique(labels, return_inverse=True)
    one_hot = torch.zeros(n, classes.numel(), dtype=features.dtype, device=features.device)
    one_hot.scatter_(1, col[:, None], 1.0)
    per_class = one_hot.sum(0).clamp(min=1)
    centroids = F.normalize(one_hot.T @ features / per_class[:, None], dim=1).detach()

    logits = features @ centroids.T / tau1
    probs = torch.softmax(logits, dim=1)
    confidence = probs.gather(1, col[:, None]).squeeze(1)
    tau2 = ((tau1 - eps) + 2 * eps * confidence).clamp(min=1e-6)
    weights = 1 + (torch.exp(1 / tau2)[:, None] - 1) * one_hot
    target = weights / weights.sum(1, keepdim=True)

    log_probs = F.log_softmax(logits, dim=1)
    kl = F.kl_div(log_probs, target, reduction="batchmean")
    nll = -log_probs.gather(1, col[:, None]).mean()
    return kl + nll


def make_batch(n: int, c: int, dim: int, device: torch.device, seed: int) -> tuple[Tensor, Tensor]:
    """Features [n, dim] on the unit sphere and labels over c classes (all present if n >= c)."""
    gen = torch.Generator().manual_seed(seed)
    feats = F.normalize(torch.randn(n, dim, generator=gen), dim=1)
    if n >= c:
        labels = torch.cat([torch.arange(c), torch.randint(0, c, (n - c,), generator=gen)])
        labels = labels[torch.randperm(n, generator=gen)]
    else:
        labels = torch.randint(0, c, (n,), generator=gen)
    return feats.to(device).requires_grad_(), labels.to(device)


def build_methods(c: int) -> dict[str, Callable[[Tensor, Tensor], Tensor]]:
    methods: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
        "ours": VarConLoss(temperature=TAU1, epsilon=EPS),
        "ours_nc": VarConLoss(temperature=TAU1, epsilon=EPS, num_classes=c),
        "authors": authors_varcon,
        "supcon": SupConLoss(TAU1),
    }
    if PMLSupConLoss is not None:
        methods["pml"] = PMLSupConLoss(temperature=TAU1)
    return methods


def estimated_gb(method: str, n: int, c: int) -> float:
    cols = n if method in ("supcon", "pml") else c
    return _FOOTPRINT[method] * 4 * n * cols / 2**30


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def step(fn: Callable[[Tensor, Tensor], Tensor], feats: Tensor, labels: Tensor) -> Tensor:
    feats.grad = None
    loss = fn(feats, labels)
    loss.backward()
    return loss


def loss_and_grad(fn, feats: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    loss = step(fn, feats, labels)
    grad = feats.grad.clone()
    feats.grad = None
    return loss.detach(), grad


def check_agreement(
    methods: dict,
    names: list[str],
    feats: Tensor,
    labels: Tensor,
    rtol: float = 1e-4,
    tangent: bool = False,
) -> str:
    """Loss (rtol) and gradient of every method in `names` against the first; raise if off.

    tangent=True compares only the gradients' components tangent to the unit sphere:
    PML normalises the embeddings inside the loss, which removes the radial part.
    """
    ref_name, *others = names
    ref_loss, ref_grad = loss_and_grad(methods[ref_name], feats, labels)

    def project(grad: Tensor) -> Tensor:
        if not tangent:
            return grad
        z = feats.detach()
        return grad - (grad * z).sum(1, keepdim=True) * z

    ref_grad = project(ref_grad)
    if not torch.isfinite(ref_loss):
        raise SystemExit(f"{ref_name}: non-finite loss {ref_loss.item()}")
    notes = [f"{ref_name}={ref_loss.item():.6f}"]
    for name in others:
        loss, grad = loss_and_grad(methods[name], feats, labels)
        grad = project(grad)
        if not torch.allclose(loss, ref_loss, rtol=rtol, atol=0.0):
            raise SystemExit(
                f"MISMATCH N={feats.shape[0]}: {name} loss {loss.item():.8f} vs "
                f"{ref_name} {ref_loss.item():.8f} (rtol {rtol})"
            )
        # Per-element gradients are O(1/N): compare relative to the gradient's scale.
        scale = ref_grad.abs().max().clamp_min(1e-12)
        err = ((grad - ref_grad).abs().max() / scale).item()
        if err > 1e-3:
            raise SystemExit(
                f"MISMATCH N={feats.shape[0]}: {name} gradient differs from {ref_name} "
                f"(max error {err:.2e} of max |grad|)"
            )
        notes.append(
            f"{name} ok (loss rel {abs(loss.item() / ref_loss.item() - 1):.1e}, grad {err:.1e})"
        )
    return ", ".join(notes)


def peak_memory_mb(fn, feats: Tensor, labels: Tensor, device: torch.device) -> float:
    """Extra memory (MB) one forward + backward allocates at its peak."""
    feats.grad = None
    if device.type == "cuda":
        sync(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        step(fn, feats, labels)
        sync(device)
        peak = torch.cuda.max_memory_allocated(device) - base
        feats.grad = None
        return peak / 2**20
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step(fn, feats, labels)
    feats.grad = None
    records = [
        e
        for e in prof.profiler.kineto_results.events()
        if e.name() == "[memory]" and str(e.device_type()).endswith("CPU")
    ]
    records.sort(key=lambda e: e.start_ns())
    running = peak = 0
    for rec in records:
        running += rec.nbytes()
        peak = max(peak, running)
    return peak / 2**20


def time_methods(
    methods: dict,
    names: list[str],
    feats: Tensor,
    labels: Tensor,
    warmup: int,
    repeats: int,
    device: torch.device,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, float]:
    """Median milliseconds of forward + backward per method, interleaved round-robin."""
    for _ in range(warmup):
        for name in names:
            step(methods[name], feats, labels)
    times: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(repeats):
        for name in names:
            feats.grad = None
            sync(device)
            start = clock()
            step(methods[name], feats, labels)
            sync(device)
            times[name].append(clock() - start)
    feats.grad = None
    return {name: 1e3 * statistics.median(ts) for name, ts in times.items()}


def fmt(x: float | None, digits: int = 1) -> str:
    if x is None:
        return "skipped"
    if isinstance(x, float) and math.isnan(x):
        return "n/a"
    return f"{x:.{digits}f}"


_PLOT_STYLE = {
    "ours": ("VarCon, ours", "tab:blue", "-o"),
    "authors": ("VarCon, authors' algorithm", "tab:orange", "--s"),
    "supcon": ("SupCon, ours", "tab:green", "-^"),
    "pml": ("SupCon, pytorch-metric-learning", "tab:red", ":v"),
}


def plot_scaling(results: list[dict], path: Path, title: str) -> None:
    """Log-log figure of the median forward + backward time against N and against C.

    Left panels: time vs N at each C (VarCon lines grow like N at fixed C, SupCon's like
    N^2, whatever C). Right panel: time vs C at the largest N (VarCon grows like C once the
    [N, C] work dominates; SupCon does not depend on C). Dotted grey lines: slopes 1 and 2.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    classes = sorted({r["C"] for r in results})
    sizes = sorted({r["N"] for r in results})
    fig, axes = plt.subplots(1, len(classes) + 1, figsize=(4.2 * (len(classes) + 1), 4.0),
                             squeeze=False)
    axes = axes[0]

    def draw(ax, xs_key: str, rows: list[dict]) -> None:
        for method, (label, color, style) in _PLOT_STYLE.items():
            pts = sorted((r[xs_key], r["ms"][method]) for r in rows if method in r["ms"])
            if pts:
                ax.plot(*zip(*pts, strict=True), style, color=color, label=label, ms=4)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ticks = sorted({r[xs_key] for r in rows})
        ax.set_xticks(ticks, [str(t) for t in ticks], fontsize=7)
        ax.minorticks_off()
        ax.grid(True, which="both", alpha=0.25)

    for ax, c in zip(axes[:-1], classes, strict=True):
        rows = [r for r in results if r["C"] == c]
        draw(ax, "N", rows)
        # reference slopes anchored at the smallest N's VarCon time
        anchor = min(rows, key=lambda r: r["N"])
        y0 = anchor["ms"].get("ours")
        if y0:
            xs = [sizes[0], sizes[-1]]
            for power, text in ((1, "slope 1 (N)"), (2, "slope 2 (N^2)")):
                ax.plot(xs, [y0 * (x / xs[0]) ** power for x in xs], ":", color="grey", lw=1)
                ax.annotate(text, (xs[-1], y0 * (xs[-1] / xs[0]) ** power), fontsize=7,
                            color="grey", ha="right", va="bottom")
        ax.set_xlabel("batch rows N")
        ax.set_ylabel("forward + backward, ms (median)")
        ax.set_title(f"C = {c} classes")
    n_max = sizes[-1]
    rows = [r for r in results if r["N"] == n_max]
    draw(axes[-1], "C", rows)
    axes[-1].set_xlabel("classes C")
    axes[-1].set_title(f"N = {n_max} rows")
    axes[0].legend(fontsize=7, loc="upper left")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 1024, 4096, 8192])
    parser.add_argument("--classes", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument(
        "--repeats",
        type=int,
        default=10,
        help="timed iterations for N <= 1024; max(3, repeats // 2) above",
    )
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--max-gb",
        type=float,
        default=8.0,
        help="skip a method whose estimated footprint exceeds this",
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory pass")
    parser.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="wall: time.perf_counter (default); cpu: time.process_time, the CPU time of "
        "the process, which other processes' load does not inflate (with --threads 1 it "
        "is the wall time of an idle machine; with more threads it also counts spinning)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", type=Path, help="write the log-log scaling figure here (PNG)")
    parser.add_argument("--json", type=Path, help="write every timing here (JSON)")
    parser.add_argument(
        "--scaling",
        action="store_true",
        help="the scaling figure's grid: N 256..8192, C 10/100/1000/4000, no memory pass; "
        "writes benchmarks/results/loss_scaling.{png,json} unless --plot/--json say otherwise",
    )
    args = parser.parse_args(argv)
    if args.scaling:
        args.sizes = [256, 512, 1024, 2048, 4096, 8192]
        args.classes = [10, 100, 1000, 4000]
        args.no_memory = True
        results_dir = Path(__file__).resolve().parent / "results"
        args.plot = args.plot or results_dir / "loss_scaling.png"
        args.json = args.json or results_dir / "loss_scaling.json"

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.clock == "cpu" and device.type == "cuda":
        parser.error("--clock cpu measures host CPU time: use --clock wall with --device cuda")
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    print(f"# bench_losses: {' '.join(sys.argv)}")
    print(
        f"# torch {torch.__version__}, python {platform.python_version()}, "
        f"{platform.machine()}, nproc {os.cpu_count()}, threads {torch.get_num_threads()}, "
        f"device {device}, D={args.dim}, warmup {args.warmup}, clock {args.clock}, "
        f"pml {'yes' if PMLSupConLoss is not None else 'not importable'}"
    )
    if hasattr(os, "getloadavg"):
        print("# load average at start: " + ", ".join(f"{x:.2f}" for x in os.getloadavg()))

    header = (
        "| N | C | R | ours ms | ours(num_classes) ms | authors ms | speed-up | "
        "SupCon ours ms | SupCon PML ms | peak MB ours | peak MB ours(nc) | peak MB authors | "
        "peak MB SupCon ours | peak MB SupCon PML |"
    )
    rows = []
    results: list[dict] = []
    for n in args.sizes:
        for c in args.classes:
            feats, labels = make_batch(n, c, args.dim, device, args.seed + 1000 * n + c)
            methods = build_methods(c)
            names = [m for m in methods if estimated_gb(m, n, c) <= args.max_gb]
            for m in methods:
                if m not in names:
                    print(
                        f"N={n} C={c} {m}: skipped (estimated "
                        f"{estimated_gb(m, n, c):.1f} GB > --max-gb {args.max_gb})"
                    )
            varcon_names = [m for m in ("ours", "ours_nc", "authors") if m in names]
            supcon_names = [m for m in ("supcon", "pml") if m in names]
            if len(varcon_names) > 1:
                print(
                    f"N={n} C={c} check VarCon: "
                    + check_agreement(methods, varcon_names, feats, labels)
                )
            if len(supcon_names) > 1:
                print(
                    f"N={n} C={c} check SupCon: "
                    + check_agreement(methods, supcon_names, feats, labels, tangent=True)
                )
            repeats = args.repeats if n <= 1024 else max(3, args.repeats // 2)
            ms = time_methods(methods, names, feats, labels, args.warmup, repeats, device, clock)
            mb = {}
            if not args.no_memory:
                mb = {m: peak_memory_mb(methods[m], feats, labels, device) for m in names}
            speedup = (
                ms["authors"] / ms["ours"] if "authors" in ms and "ours" in ms else float("nan")
            )
            row = (
                f"| {n} | {c} | {repeats} | {fmt(ms.get('ours'))} | {fmt(ms.get('ours_nc'))} | "
                f"{fmt(ms.get('authors'))} | {fmt(speedup, 2)}x | {fmt(ms.get('supcon'))} | "
                f"{fmt(ms.get('pml')) if PMLSupConLoss is not None else 'n/a'} | "
                + " | ".join(
                    fmt(mb.get(m)) if not args.no_memory else "n/a"
                    for m in ("ours", "ours_nc", "authors", "supcon", "pml")
                )
                + " |"
            )
            print(row, flush=True)
            rows.append(row)
            results.append({"N": n, "C": c, "repeats": repeats, "ms": ms, "peak_mb": mb})
            del feats, labels, methods

    print()
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for row in rows:
        print(row)
    load_end = os.getloadavg() if hasattr(os, "getloadavg") else None
    if load_end is not None:
        print("\n# load average at end: " + ", ".join(f"{x:.2f}" for x in load_end))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        meta = {"command": " ".join(sys.argv), "torch": torch.__version__,
                "threads": torch.get_num_threads(), "device": str(device), "dim": args.dim,
                "clock": args.clock, "load_end": load_end}
        args.json.write_text(json.dumps({"meta": meta, "results": results}, indent=1) + "\n")
        print(f"# wrote {args.json}")
    if args.plot:
        title = (f"VarCon O(N*C) vs SupCon O(N^2): forward + backward, D={args.dim}, "
                 f"{device}, threads={torch.get_num_threads()}, torch {torch.__version__}")
        plot_scaling(results, args.plot, title)
        print(f"# wrote {args.plot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
