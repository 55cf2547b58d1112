"""Run the speed benchmarks in one go and keep their tables.

    python -m benchmarks.run --quick                   # every speed table, small grids, < 10 min
    python -m benchmarks.run --quick --only losses data
    python -m benchmarks.run                           # the grids BENCHMARKS.md was measured with
    python -m benchmarks.run --quick --root /tmp/data/cifar10 --out /tmp/bench

Each benchmark runs as its own process (``python benchmarks/bench_<name>.py ...``), one after
another (they time the same cores: running them side by side would corrupt every figure),
its output printed and saved to ``OUT/<name>.txt``; the loss benchmark also writes its log-log
scaling figure and JSON to ``OUT``. Every script measures its baseline in the same run
(the authors' algorithm, the authors' data pipeline, a plain loop, the full batch), so each
table is self-contained. A benchmark that needs the CIFAR-10 JPEG tree (``--root``, default
``/tmp/data/cifar10``) is skipped, with the reason, when the tree is absent:
``tar xzf ../shared/data/cifar10-jpeg.tar.gz -C /tmp/data`` provides it.

``--quick`` trades repetitions and grid points for time; its figures are noisier than the
full ones (and on a shared machine, load changes them: every script prints the load average).
The run ends with a summary: each benchmark's wall time and whether it succeeded. Exit status
1 if any failed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Benchmark:
    """One script, with its arguments in quick and full mode (``{root}``/``{out}`` filled in)."""

    name: str
    script: str
    quick: tuple[str, ...]
    full: tuple[str, ...]
    needs_root: bool = False


BENCHMARKS: tuple[Benchmark, ...] = (
    Benchmark(
        "losses", "bench_losses.py",
        quick=("--sizes", "256", "1024", "4096", "--classes", "10", "1000", "--repeats", "4",
               "--plot", "{out}/loss_scaling.png", "--json", "{out}/loss_scaling.json"),
        full=("--plot", "{out}/loss_grid.png", "--json", "{out}/loss_grid.json"),
    ),
    Benchmark(
        "data", "bench_data.py",
        quick=("--root", "{root}", "--batches", "8", "--rounds", "1"),
        full=("--root", "{root}"),
        needs_root=True,
    ),
    Benchmark(
        "engine", "bench_engine.py",
        quick=("--epochs", "2", "--rounds", "1"),
        full=(),
    ),
    Benchmark(
        "eval", "bench_eval.py",
        quick=("--root", "{root}", "--per-class", "100", "--robustness-images", "100"),
        full=("--root", "{root}"),
        needs_root=True,
    ),
    Benchmark(
        "corruptions", "bench_corruptions.py",
        quick=("--root", "{root}", "--n", "40", "--n-large", "4", "--rounds", "1"),
        full=("--root", "{root}"),
        needs_root=True,
    ),
    Benchmark(
        "prototypes", "bench_prototypes.py",
        quick=("--classes", "1000", "10000", "--repeats", "4"),
        full=(),
    ),
    Benchmark(
        "micro_batch", "bench_micro_batch.py",
        quick=("--batch-size", "256", "--micro-batch", "64", "--steps", "2"),
        full=("--batch-size", "1024", "--micro-batch", "128", "--steps", "2"),
    ),
    Benchmark(
        "memory", "bench_memory.py",
        quick=("--quick", "--json", "{out}/memory.json"),
        full=("--json", "{out}/memory.json"),
    ),
)


def command(bench: Benchmark, quick: bool, root: Path, out: Path) -> list[str]:
    """The argv that runs ``bench`` (the script path is absolute: any working directory)."""
    args = bench.quick if quick else bench.full
    filled = [a.format(root=root, out=out) for a in args]
    return [sys.executable, str(HERE / bench.script), *filled]


def run_one(bench: Benchmark, argv: list[str], log: Path) -> tuple[str, float]:
    """Run one benchmark, echoing its output and saving it to ``log``; (status, seconds)."""
    print(f"\n===== {bench.name}: {' '.join(argv[1:])}", flush=True)
    start = time.perf_counter()
    env = dict(os.environ)
    # the scripts import varcon: make a source checkout work without an install
    src = str(HERE.parent / "src")
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    tmp = log.with_name(f".{log.name}.tmp")
    with tmp.open("w", encoding="utf-8") as sink:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, env=env, cwd=HERE.parent)
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            sink.write(line)
        code = proc.wait()
    os.replace(tmp, log)
    seconds = time.perf_counter() - start
    return ("ok" if code == 0 else f"failed (exit {code})"), seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small grids, under 10 minutes")
    parser.add_argument("--root", type=Path, default=Path("/tmp/data/cifar10"),
                        help="CIFAR-10 JPEG tree (train/, val/) for the data and eval benchmarks")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "latest",
                        help="where each benchmark's output (and the loss figure) goes")
    names = [b.name for b in BENCHMARKS]
    parser.add_argument("--only", nargs="+", choices=names, metavar="NAME",
                        help=f"run only these ({', '.join(names)})")
    parser.add_argument("--list", action="store_true", help="print the commands and exit")
    args = parser.parse_args(argv)

    selected = [b for b in BENCHMARKS if not args.only or b.name in args.only]
    root, out = args.root.resolve(), args.out.resolve()
    if args.list:
        for bench in selected:
            print(" ".join(command(bench, args.quick, root, out)))
        return 0
    out.mkdir(parents=True, exist_ok=True)
    has_root = (root / "train").is_dir() and (root / "val").is_dir()
    summary: list[tuple[str, str, float]] = []
    total = time.perf_counter()
    for bench in selected:
        if bench.needs_root and not has_root:
            reason = (f"skipped: no CIFAR-10 JPEG tree at {root} (tar xzf "
                      "../shared/data/cifar10-jpeg.tar.gz -C /tmp/data, or --root DIR)")
            print(f"\n===== {bench.name}: {reason}", flush=True)
            summary.append((bench.name, reason, 0.0))
            continue
        status, seconds = run_one(bench, command(bench, args.quick, root, out),
                                  out / f"{bench.name}.txt")
        summary.append((bench.name, status, seconds))

    print(f"\n===== summary ({'quick' if args.quick else 'full'}; outputs in {out})")
    for name, status, seconds in summary:
        print(f"  {name:12s} {seconds:7.1f} s  {status}")
    print(f"  {'total':12s} {time.perf_counter() - total:7.1f} s")
    return 1 if any(s.startswith("failed") for _, s, _ in summary) else 0


if __name__ == "__main__":
    raise SystemExit(main())
