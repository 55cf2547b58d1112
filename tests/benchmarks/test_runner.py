"""The benchmark runner (``python -m benchmarks.run``) and the loss benchmark's scaling figure.

Only the plumbing is tested (commands, skipping, failure reporting, files written); the
figures themselves are measurements and live in BENCHMARKS.md, never in timed tests.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks import bench_losses  # noqa: E402
from benchmarks import run as runner  # noqa: E402


def test_list_prints_every_quick_command(capsys, tmp_path):
    assert runner.main(["--quick", "--list", "--root", str(tmp_path), "--out", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == len(runner.BENCHMARKS)
    for bench, line in zip(runner.BENCHMARKS, lines, strict=True):
        assert bench.script in line
        assert "{root}" not in line and "{out}" not in line
    assert "--repeats 4" in lines[0]  # quick grid, not the full one


def test_missing_data_is_skipped_with_the_fix_and_failures_set_the_exit_status(
    monkeypatch, tmp_path, capsys
):
    ok = tmp_path / "bench_ok.py"
    ok.write_text("print('| table | 1 |')\n")
    bad = tmp_path / "bench_bad.py"
    bad.write_text("import sys\nprint('partial')\nsys.exit(3)\n")
    monkeypatch.setattr(runner, "HERE", tmp_path)
    monkeypatch.setattr(runner, "BENCHMARKS", (
        runner.Benchmark("ok", "bench_ok.py", quick=(), full=()),
        runner.Benchmark("needs", "bench_ok.py", quick=(), full=(), needs_root=True),
        runner.Benchmark("bad", "bench_bad.py", quick=(), full=()),
    ))
    out = tmp_path / "out"
    code = runner.main(["--quick", "--root", str(tmp_path / "no-such-tree"), "--out", str(out)])
    text = capsys.readouterr().out
    assert code == 1
    assert (out / "ok.txt").read_text() == "| table | 1 |\n"
    assert (out / "bad.txt").read_text() == "partial\n"
    assert not (out / "needs.txt").exists()
    assert "cifar10-jpeg.tar.gz" in text  # the skip names the fix
    assert "failed (exit 3)" in text
    assert not list(out.glob(".*.tmp"))  # no half-written log left behind


def test_only_runs_the_named_benchmarks(monkeypatch, tmp_path, capsys):
    script = tmp_path / "bench_x.py"
    script.write_text("print('x')\n")
    monkeypatch.setattr(runner, "HERE", tmp_path)
    monkeypatch.setattr(runner, "BENCHMARKS", (
        runner.Benchmark("a", "bench_x.py", quick=(), full=()),
        runner.Benchmark("b", "bench_x.py", quick=(), full=()),
    ))
    assert runner.main(["--only", "b", "--out", str(tmp_path / "o")]) == 0
    assert [p.name for p in (tmp_path / "o").iterdir()] == ["b.txt"]


def test_loss_benchmark_writes_its_scaling_figure_and_json(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    png, js = tmp_path / "scaling.png", tmp_path / "scaling.json"
    code = bench_losses.main([
        "--sizes", "32", "64", "--classes", "4", "16", "--repeats", "1", "--warmup", "0",
        "--no-memory", "--threads", "1", "--plot", str(png), "--json", str(js),
    ])
    assert code == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads(js.read_text())
    assert sorted((r["N"], r["C"]) for r in data["results"]) == [
        (32, 4), (32, 16), (64, 4), (64, 16)
    ]
    for row in data["results"]:
        assert {"ours", "authors", "supcon"} <= set(row["ms"])
        assert all(ms > 0 for ms in row["ms"].values())
    assert "check VarCon: ours=" in capsys.readouterr().out  # agreement checked before timing
