"""The prototype study's summary table (benchmarks/prototypes/summarize.py)."""

from __future__ import annotations

import json
from pathlib import Path

from scripttools import REPO, load_script

SCRIPT = REPO / "benchmarks" / "prototypes" / "summarize.py"


def _load():
    return load_script("prototype_summary", SCRIPT)


def _result(root: Path, name: str, linear: float, knn: float) -> None:
    ev = root / name / "eval"
    ev.mkdir(parents=True)
    (ev / "linear.json").write_text(json.dumps({"results": {"top1": linear}}))
    (ev / "knn.json").write_text(json.dumps({"results": {"top1": {"20": knn, "200": 0.0}}}))


def test_means_seeds_and_paired_differences(tmp_path, capsys):
    _result(tmp_path, "small-batch-random-s0", 40.0, 38.0)
    _result(tmp_path, "small-batch-random-s1", 42.0, 40.0)
    _result(tmp_path, "small-ema-random-s0", 41.0, 38.5)
    _result(tmp_path, "small-ema-random-s1", 45.0, 41.5)
    _result(tmp_path, "small-ema-random-s2", 99.0, 99.0)  # no baseline seed 2: not paired
    (tmp_path / "small-ema-balanced-s0").mkdir()  # interrupted: no result, skipped
    (tmp_path / ".tmp-small-batch-balanced-s0").mkdir()
    assert _load().main([str(tmp_path)]) == 0
    rows = {tuple(c.strip() for c in line.split("|")[1:3]): line
            for line in capsys.readouterr().out.splitlines()[2:]}
    assert set(rows) == {("small", "batch-random"), ("small", "ema-random")}
    base = rows[("small", "batch-random")]
    assert "| 2 | 41.00 ± 1.41 | 40.00, 42.00 | 39.00 ± 1.41 |" in base
    ema = rows[("small", "ema-random")]
    assert "| 3 |" in ema and "41.00, 45.00, 99.00" in ema
    # paired over seeds 0 and 1: linear +1 and +3, kNN +0.5 and +1.5
    assert ema.rstrip().endswith("| 2.00 ± 1.41 | 1.00 ± 0.71 |")
