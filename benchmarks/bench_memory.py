"""Host memory at ImageNet-1K size, synthetic data: workers, kNN + probe, the ImageFolder scan.

    python benchmarks/bench_memory.py                    # all three parts, ImageNet-1K sizes
    python benchmarks/bench_memory.py --quick            # small sizes, under a minute
    python benchmarks/bench_memory.py --only workers     # workers | knn | scan

* ``workers``: private memory (``Private_Clean + Private_Dirty`` of /proc/PID/smaps_rollup,
  i.e. USS) of each DataLoader worker after its first batch and after the last batch of one
  shuffled epoch (persistent workers, read before they exit) over ``--paths`` (1,281,167)
  synthetic ImageNet-style paths, 2 workers (fork). The dataset's ``__getitem__`` only
  reads the path (returns its length): no image is decoded. Baseline: the storage
  ``ImageFileDataset`` had before, a Python list of ``str`` (a class in this file);
  against ``ImageFileDataset``'s ``PathArray``.
* ``knn``: peak memory of ``knn_evaluate`` and ``train_probe_on_features`` on simulated
  features (float16 storage, ``--dim`` 2048, 1000 classes), each in a fresh process. The
  peak is VmHWM of /proc/self/status after ``/proc/self/clear_refs`` reset it once the
  features exist, minus the RSS then: the memory the method adds beyond its inputs (on a
  CPU the "device" is host memory; with CUDA, ``torch.cuda.max_memory_allocated`` too).
  Baseline: the kNN as it was (one ``[chunk, N_train]`` similarity matrix, a float32
  normalised copy of the training set), at ``--baseline-fraction`` of the rows when the full
  size would not fit, extrapolated linearly and labelled as such.
* ``scan``: a tree of ``--classes`` x ``--per-class`` tiny real JPEG files (one 16x16 JPEG
  copied) under ``--tmp``, then the time of the ImageFolder scan (``_scan_tree``) and of the
  ``data.bad_files=skip`` header check (``build_dataset(..., cache="none",
  bad_files="skip")`` minus the scan), cold and warm page cache not controlled (the tree
  was just written: warm). The tree is deleted afterwards.

Every figure is measured in the same run as its baseline; the machine's load average is
printed (a shared machine changes timings, not memory).
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

warnings.filterwarnings("ignore", message="The image decoding", category=DeprecationWarning)

IMAGENET_TRAIN = 1_281_167
MB = 2**20


# ------------------------------------------------------------------------------ /proc


def private_bytes(pid: int | str = "self") -> int:
    """USS: Private_Clean + Private_Dirty (+ Private_Hugetlb) of /proc/PID/smaps_rollup."""
    total = 0
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Private_"):
                total += int(line.split()[1]) * 1024
    return total


def _status(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(field)


def reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


# ------------------------------------------------------------------------------ workers


def synthetic_paths(n: int, classes: int = 1000) -> list[str]:
    """ImageNet-style train paths: /data/imagenet/train/nXXXXXXXX/nXXXXXXXX_IIII.JPEG."""
    per = -(-n // classes)
    return [f"/data/imagenet/train/n{1440764 + i // per:08d}/n{1440764 + i // per:08d}_"
            f"{i % per}.JPEG" for i in range(n)]


class ListPathDataset(Dataset):
    """The baseline: ImageFileDataset's storage before PathArray (a list of str + a targets
    tensor); ``__getitem__`` reads the path only."""

    def __init__(self, paths: list[str], targets: torch.Tensor) -> None:
        self.paths = list(paths)
        self.targets = targets

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[int, int]:
        return len(self.paths[index]), int(self.targets[index])


def _array_dataset(paths: list[str], targets: torch.Tensor) -> Dataset:
    from varcon.data import DatasetInfo, ImageFileDataset

    class ArrayPathDataset(ImageFileDataset):
        """ImageFileDataset's own storage (PathArray); ``__getitem__`` reads the path only."""

        def __getitem__(self, index: int) -> tuple[int, int]:  # type: ignore[override]
            return len(self.paths[index]), int(self.targets[index])

    info = DatasetInfo("synthetic", 1000, [str(i) for i in range(1000)], 3, 224,
                       (0.5,) * 3, (0.5,) * 3)
    return ArrayPathDataset(paths, targets, info)


def _epoch(dataset: Dataset, workers: int, batch: int) -> dict[str, float]:
    loader = DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=workers,
                        generator=torch.Generator().manual_seed(0),
                        multiprocessing_context="fork", persistent_workers=True)
    it = iter(loader)
    next(it)
    pids = [w.pid for w in it._workers]  # type: ignore[attr-defined]
    start = [private_bytes(p) for p in pids]
    t0 = time.perf_counter()
    seen = 0
    for lengths, _ in it:
        seen += len(lengths)
    seconds = time.perf_counter() - t0
    end = [private_bytes(p) for p in pids]  # persistent workers: still alive, epoch done
    it._shutdown_workers()  # type: ignore[attr-defined]
    del it, loader
    return {"start_mb": sum(start) / MB, "end_mb": sum(end) / MB,
            "growth_per_worker_mb": (sum(end) - sum(start)) / MB / workers,
            "seconds": seconds, "items": seen + batch}


def bench_workers(n: int, workers: int, batch: int) -> list[dict[str, object]]:
    paths = synthetic_paths(n)
    targets = torch.arange(n, dtype=torch.long) % 1000
    rows: list[dict[str, object]] = []
    for name, make in (("list of str (before)", lambda: ListPathDataset(paths, targets)),
                       ("PathArray (now)", lambda: _array_dataset(paths, targets))):
        ds = make()
        gc.collect()
        r = _epoch(ds, workers, batch)
        storage = (sys.getsizeof(ds.paths) + sum(sys.getsizeof(p) for p in ds.paths)
                   if isinstance(ds.paths, list) else ds.paths.nbytes)  # type: ignore[attr-defined]
        rows.append({"storage": name, "paths": n, "workers": workers,
                     "paths_mb": storage / MB, **r})
        del ds
        gc.collect()
    return rows


# ------------------------------------------------------------------------------ knn + probe


def _old_knn_evaluate(train_feats, train_labels, test_feats, test_labels, *, num_classes,
                      ks, temperature=0.1, chunk_size=1024):
    """knn_evaluate before training rows were chunked (the baseline)."""
    import torch.nn.functional as F

    acc_dtype = torch.float64
    work_dtype = torch.promote_types(train_feats.dtype, torch.float32)
    train = F.normalize(train_feats.to(work_dtype), dim=1)
    labels = train_labels.long()
    n_train, n_test = train.shape[0], test_feats.shape[0]
    k_max = min(max(ks), n_train)
    hits1 = dict.fromkeys(ks, 0)
    for start in range(0, n_test, chunk_size):
        chunk = test_feats[start:start + chunk_size].to(dtype=work_dtype)
        sim = F.normalize(chunk, dim=1) @ train.T
        top_sim, top_idx = sim.topk(k_max, dim=1, sorted=True)
        del sim
        weights = (top_sim.to(acc_dtype) / temperature).exp()
        nl = labels[top_idx]
        truth = test_labels[start:start + chunk_size, None]
        for k in set(ks):
            scores = torch.zeros(chunk.shape[0], num_classes, dtype=acc_dtype)
            scores.scatter_add_(1, nl[:, :k], weights[:, :k])
            hits1[k] += int(scores.topk(5, dim=1).indices.eq(truth)[:, 0].sum())
    return {"top1": {str(k): 100.0 * hits1[k] / n_test for k in ks}}


def _features(n: int, d: int, classes: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    feats = torch.empty(n, d, dtype=torch.float16)
    for s in range(0, n, 65536):  # float32 in slices: no float32 copy of the whole
        feats[s:s + 65536] = torch.randn(min(65536, n - s), d, generator=g)
    return feats, torch.randint(0, classes, (n,), generator=g)


def knn_child(spec: dict) -> dict:
    """One measurement in this (fresh) process; prints nothing, returns the figures."""
    torch.set_num_threads(spec.get("threads", torch.get_num_threads()))
    train, train_y = _features(spec["n_train"], spec["dim"], 1000, 0)
    test, test_y = _features(spec["n_test"], spec["dim"], 1000, 1)
    gc.collect()
    rss0 = _status("VmRSS")
    if not reset_peak():
        return {"error": "cannot reset VmHWM (/proc/self/clear_refs)"}
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    what = spec["what"]
    if what == "knn (before)":
        out = _old_knn_evaluate(train, train_y, test, test_y, num_classes=1000, ks=(20, 200))
    elif what == "knn (now)":
        from varcon.evaluation.knn import knn_evaluate

        out = knn_evaluate(train, train_y, test, test_y, num_classes=1000, ks=(20, 200))
    elif what == "probe":
        from varcon.evaluation.linear import train_probe_on_features
        from varcon.runtime.config import LinearConfig

        # the session hands the probe float32 features: convert slice by slice
        feats32 = torch.empty(train.shape, dtype=torch.float32)
        for s in range(0, len(train), 65536):
            feats32[s:s + 65536] = train[s:s + 65536]
        del train
        gc.collect()
        rss0 = _status("VmRSS")
        reset_peak()
        t0 = time.perf_counter()
        lc = LinearConfig(epochs=1, batch_size=256, lr=1.0)
        train_probe_on_features(feats32, train_y, 1000, lc, device="cpu")
        out = {}
    else:
        raise ValueError(what)
    seconds = time.perf_counter() - t0
    return {"what": what, "n_train": spec["n_train"], "n_test": spec["n_test"],
            "dim": spec["dim"], "inputs_mb": rss0 / MB,
            "peak_extra_mb": (_status("VmHWM") - rss0) / MB, "seconds": seconds,
            "cuda_peak_mb": torch.cuda.max_memory_allocated() / MB if cuda else None,
            "result": out}


def _run_child(spec: dict, timeout: float) -> dict:
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parent.parent / "src")
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)],
                          capture_output=True, text=True, env=env, timeout=timeout)
    if proc.returncode != 0:
        return {**spec, "error": proc.stderr.strip().splitlines()[-1:] or [proc.returncode]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bench_knn(n_train: int, n_test: int, dim: int, fraction: float, probe_fraction: float,
              timeout: float) -> list[dict]:
    small = max(int(n_train * fraction), 1000)
    probe_n = max(int(n_train * probe_fraction), 1000)
    specs = [{"what": "knn (now)", "n_train": n_train, "n_test": n_test, "dim": dim},
             {"what": "knn (now)", "n_train": small, "n_test": n_test, "dim": dim},
             {"what": "knn (before)", "n_train": small, "n_test": n_test, "dim": dim},
             {"what": "probe", "n_train": probe_n, "n_test": 1, "dim": dim}]
    if small == n_train:
        specs = specs[1:]
    return [_run_child(s, timeout) for s in specs]


# ------------------------------------------------------------------------------ scan


def _tiny_jpeg() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def bench_scan(classes: int, per_class: int, tmp: Path) -> dict:
    from varcon.data import build_dataset
    from varcon.data.datasets import _scan_tree

    root = Path(tempfile.mkdtemp(prefix="varcon-scan-", dir=tmp))
    try:
        data = _tiny_jpeg()
        t0 = time.perf_counter()
        for c in range(classes):
            d = root / "train" / f"n{c:08d}"
            d.mkdir(parents=True)
            for i in range(per_class):
                with open(d / f"n{c:08d}_{i}.JPEG", "wb") as f:
                    f.write(data)
        write_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        paths, _, _ = _scan_tree(root.resolve(), "train")
        scan_s = time.perf_counter() - t0
        n = len(paths)
        del paths
        rss0 = _status("VmRSS")
        reset_peak()
        t0 = time.perf_counter()
        ds = build_dataset("imagefolder", root, "train", cache="none", bad_files="skip")
        load_s = time.perf_counter() - t0
        peak = (_status("VmHWM") - rss0) / MB
        assert len(ds) == n
        return {"files": n, "jpeg_bytes": len(data), "write_s": write_s, "scan_s": scan_s,
                "load_skip_s": load_s, "header_check_s": load_s - scan_s,
                "load_peak_extra_mb": peak, "dataset_paths_mb": ds.paths.nbytes / MB}
    finally:
        shutil.rmtree(root, ignore_errors=True)


# ------------------------------------------------------------------------------ main


def _table(rows: list[dict], cols: list[tuple[str, str, str]]) -> str:
    head = "| " + " | ".join(c[1] for c in cols) + " |"
    sep = "|" + "---|" * len(cols)
    body = []
    for r in rows:
        cells = []
        for key, _, fmt in cols:
            v = r.get(key)
            cells.append("-" if v is None else (format(v, fmt) if fmt else str(v)))
        body.append("| " + " | ".join(cells) + " |")
    return "\n".join([head, sep, *body])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small sizes (< 1 minute)")
    p.add_argument("--only", nargs="+", choices=("workers", "knn", "scan"))
    p.add_argument("--paths", type=int, default=IMAGENET_TRAIN)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--n-train", type=int, default=IMAGENET_TRAIN)
    p.add_argument("--n-test", type=int, default=1024,
                   help="test rows (one chunk: memory does not grow with them, time does)")
    p.add_argument("--dim", type=int, default=2048)
    p.add_argument("--baseline-fraction", type=float, default=0.125,
                   help="rows of the old kNN (and of 'now' for comparison) as a fraction")
    p.add_argument("--probe-fraction", type=float, default=0.125)
    p.add_argument("--classes", type=int, default=1000)
    p.add_argument("--per-class", type=int, default=1281)
    p.add_argument("--tmp", type=Path, default=Path("/tmp"))
    p.add_argument("--timeout", type=float, default=900)
    p.add_argument("--json", type=Path)
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(knn_child(json.loads(args.child))))
        return 0
    if args.quick:
        args.paths, args.n_train, args.n_test, args.dim = 100_000, 40_000, 256, 256
        args.baseline_fraction, args.probe_fraction = 0.5, 0.5
        args.classes, args.per_class = 100, 100
    parts = args.only or ["workers", "knn", "scan"]
    print(f"# bench_memory{' --quick' if args.quick else ''}: {os.cpu_count()} CPUs, load "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}, torch {torch.__version__}, "
          f"CUDA {'yes' if torch.cuda.is_available() else 'no'}", flush=True)
    out: dict[str, object] = {}
    if "workers" in parts:
        rows = bench_workers(args.paths, args.workers, args.batch)
        out["workers"] = rows
        print(f"\n## DataLoader workers: private memory over one epoch of {args.paths:,} paths "
              f"({args.workers} workers, batch {args.batch}, shuffled, fork)\n")
        print(_table(rows, [("storage", "storage", ""), ("paths_mb", "paths MB (main)", ".1f"),
                            ("start_mb", "workers' USS after batch 1, MB", ".1f"),
                            ("end_mb", "workers' USS at epoch end, MB", ".1f"),
                            ("growth_per_worker_mb", "growth per worker, MB", ".1f"),
                            ("seconds", "epoch s", ".1f")]), flush=True)
    if "knn" in parts:
        rows = bench_knn(args.n_train, args.n_test, args.dim, args.baseline_fraction,
                         args.probe_fraction, args.timeout)
        out["knn"] = rows
        print(f"\n## kNN (k 20, 200) and linear probe (1 epoch, batch 256) on float16 features "
              f"x {args.dim}, 1000 classes\n")
        print(_table(rows, [("what", "method", ""), ("n_train", "N_train", ","),
                            ("n_test", "N_test", ","), ("inputs_mb", "RSS with inputs, MB", ".0f"),
                            ("peak_extra_mb", "peak beyond inputs, MB", ".0f"),
                            ("cuda_peak_mb", "CUDA peak MB", ".0f"), ("seconds", "s", ".1f"),
                            ("error", "error", "")]))
        before = [r for r in rows if r.get("what") == "knn (before)" and "error" not in r]
        if before and before[0]["n_train"] != args.n_train:
            r = before[0]
            scale = args.n_train / r["n_train"]
            print(f"\nExtrapolated (linear in N_train, not measured): knn (before) at "
                  f"N_train={args.n_train:,}: peak beyond inputs ~ "
                  f"{r['peak_extra_mb'] * scale:,.0f} MB")
        probe = [r for r in rows if r.get("what") == "probe" and "error" not in r]
        if probe and probe[0]["n_train"] != args.n_train:
            fp32 = args.n_train * args.dim * 4 / MB
            print(f"Probe input at N_train={args.n_train:,} (arithmetic): float32 features "
                  f"{fp32:,.0f} MB, on the probe's device whole (feats.to(device))")
        print(flush=True)
    if "scan" in parts:
        r = bench_scan(args.classes, args.per_class, args.tmp)
        out["scan"] = r
        print(f"\n## ImageFolder scan and bad_files=skip header check: {r['files']:,} files "
              f"({args.classes} classes x {args.per_class}, {r['jpeg_bytes']}-byte JPEGs)\n")
        print(_table([r], [("files", "files", ","), ("write_s", "write tree s", ".1f"),
                           ("scan_s", "scan s", ".2f"),
                           ("header_check_s", "header check s", ".1f"),
                           ("load_skip_s", "build_dataset(bad_files=skip) s", ".1f"),
                           ("load_peak_extra_mb", "load peak MB", ".0f"),
                           ("dataset_paths_mb", "PathArray MB", ".1f")]), flush=True)
    if args.json:
        args.json.write_text(json.dumps(out, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
