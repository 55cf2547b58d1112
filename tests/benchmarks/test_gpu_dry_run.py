"""``bash benchmarks/gpu/run.sh OUT --cpu-dry-run``: every part of the GPU check runs at toy
size on the CPU and the report has every part, with finite numbers (so the script cannot
rot before a GPU runs it)."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PARTS = ("tests", "loss", "e2e_resnet18", "e2e_resnet18_compile", "e2e_resnet50",
         "e2e_resnet50_compile", "breakdown")
SECTIONS = ("data", "forward", "loss", "backward", "optimizer")


def positive(x: object) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str, Path]:
    if shutil.which("bash") is None or shutil.which("timeout") is None:
        pytest.skip("needs bash and coreutils' timeout")
    out = tmp_path_factory.mktemp("gpu_check")
    env = {**os.environ, "PYTHON": sys.executable}
    env.pop("VARCON_GPU_TESTS_DEVICE", None)
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu" / "run.sh"), str(out),
                           "--cpu-dry-run"], capture_output=True, text=True, timeout=400,
                          env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (out / "results.json").is_file(), proc.stdout[-3000:]
    logs = "\n".join(f"--- {f.name}\n{f.read_text()[-2000:]}"
                     for f in sorted((out / "logs").glob("*.log")))
    return json.loads((out / "results.json").read_text()), logs, out


@pytest.mark.slow
def test_every_part_ran_and_reported(dry_run):
    res, logs, out = dry_run
    assert res["dry_run"] is True
    assert set(res["parts"]) == set(PARTS)
    failed = {k: p.get("error") for k, p in res["parts"].items() if not p["ok"]}
    assert not failed, f"failed parts: {failed}\n{logs}"
    assert res["ok"] is True
    assert (out / "gpu_tests.xml").is_file()
    md = (out / "results.md").read_text()
    for heading in ("| part | status | seconds |", "## Loss", "## End-to-end",
                    "## Where our step"):
        assert heading in md, f"results.md lacks {heading!r}"
    for name in PARTS:
        assert f"| {name} | ok |" in md, f"results.md: part {name} not ok"


@pytest.mark.slow
def test_gpu_tests_skip_cleanly_without_cuda(dry_run):
    tests = dry_run[0]["parts"]["tests"]
    assert tests["counts"]["skipped"] == len(tests["results"]) > 0, tests["counts"]
    assert all("no CUDA device" in r["message"] for r in tests["results"])


@pytest.mark.slow
def test_numbers_are_finite(dry_run):
    parts = dry_run[0]["parts"]
    loss = parts["loss"]["results"]
    assert {r["dtype"] for r in loss} == {"fp32", "bf16"} and len(loss) >= 4
    for r in loss:
        assert all(positive(v) for v in r["ms"].values()), r
        assert positive(r["authors_over_ours"]) and all(map(math.isfinite, r["loss"].values()))
    e2e = [r for k in PARTS if k.startswith("e2e_") for r in parts[k]["results"]]
    variants = {(r["model"], r["variant"].split(" (")[0].split(" +")[0]) for r in e2e}
    assert len(e2e) == 6 and len(variants) == 4, variants  # ours x2, authors, per model
    for r in e2e:
        assert positive(r["images_per_s"]) and positive(r["step_ms"]), r
        assert r["peak_gb"] is None  # not measured on a CPU
    for r in parts["breakdown"]["results"]:
        assert set(r["fractions"]) == set(SECTIONS)
        assert all(math.isfinite(v) and v >= 0 for v in r["fractions"].values()), r
        assert abs(sum(r["fractions"].values()) - 1) < 1e-3 and positive(r["step_ms"])
