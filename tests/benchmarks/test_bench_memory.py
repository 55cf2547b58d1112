"""benchmarks/bench_memory.py runs at toy size (its figures live in BENCHMARKS.md)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks import bench_memory as bm  # noqa: E402

pytestmark = [pytest.mark.filterwarnings("ignore:The image decoding:DeprecationWarning"),
              pytest.mark.skipif(not Path("/proc/self/smaps_rollup").exists(),
                                 reason="needs Linux /proc")]


def test_workers_part_measures_both_storages():
    rows = bm.bench_workers(3000, workers=2, batch=64)
    assert [r["storage"] for r in rows] == ["list of str (before)", "PathArray (now)"]
    for r in rows:
        assert r["items"] >= 3000 and r["start_mb"] > 0 and r["end_mb"] > 0


def test_knn_child_and_scan(tmp_path):
    for what in ("knn (now)", "knn (before)", "probe"):
        r = bm.knn_child({"what": what, "n_train": 2000, "n_test": 16, "dim": 8})
        assert r["peak_extra_mb"] >= 0 and "error" not in r
    r = bm.bench_scan(3, 5, tmp_path)
    assert r["files"] == 15 and r["scan_s"] >= 0 and r["header_check_s"] is not None
    assert list(tmp_path.iterdir()) == []  # the tree is deleted


def test_paths_look_like_imagenet():
    paths = bm.synthetic_paths(2562, classes=2)
    assert len(paths) == 2562 and paths[0].endswith("_0.JPEG") and len(set(paths)) == 2562
