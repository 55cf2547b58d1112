"""The study queues' shared shell functions (benchmarks/queue_lib.sh), with a fake ``varcon``."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

LIB = Path(__file__).resolve().parents[2] / "benchmarks" / "queue_lib.sh"
pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


@pytest.fixture
def env(tmp_path):
    """PATH with a fake ``varcon`` that logs its arguments and writes a figures manifest."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "varcon"
    fake.write_text('#!/usr/bin/env bash\necho "$*" >> "$VARCON_LOG"\n'
                    'mkdir -p "$2/figures" && echo "{}" > "$2/figures/figures.json"\n')
    fake.chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}",
            "VARCON_LOG": str(tmp_path / "calls.log"), "RESULTS": str(tmp_path / "results")}


def _bash(env: dict, script: str) -> None:
    subprocess.run(["bash", "-c", f'set -euo pipefail; . "{LIB}"; {script}'], env=env,
                   check=True, capture_output=True, text=True)


def _calls(env: dict) -> list[str]:
    log = Path(env["VARCON_LOG"])
    return log.read_text().splitlines() if log.exists() else []


def _run(tmp_path: Path) -> Path:
    run = tmp_path / "runs" / "varcon-s0"
    (run / "eval").mkdir(parents=True)
    (run / "eval" / "linear.json").write_text("{}")
    (run / "eval" / "linear_probe.pt").write_bytes(b"probe")
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "last.pt").write_bytes(b"ckpt")
    (run / "metrics.jsonl").write_text('{"epoch": 1}\n')
    (run / "config.yaml").write_text("method: varcon\n")
    return run


def test_figures_are_drawn_once_until_their_inputs_change(tmp_path, env):
    run = _run(tmp_path)
    _bash(env, f'figures "{run}"')
    assert _calls(env) == [f"figures {run}"]
    _bash(env, f'figures "{run}"')  # nothing newer than figures.json: not redrawn
    assert len(_calls(env)) == 1
    later = time.time() + 5
    os.utime(run / "eval" / "linear.json", (later, later))  # a new evaluation landed
    _bash(env, f'figures "{run}"')
    assert len(_calls(env)) == 2


def test_figures_of_a_run_without_inputs_are_still_drawn(tmp_path, env):
    run = tmp_path / "bare"
    (run / "figures").mkdir(parents=True)
    (run / "figures" / "figures.json").write_text("{}")
    _bash(env, f'figures "{run}"')
    assert _calls(env) == [f"figures {run}"]


def test_copy_results_keeps_small_files_only(tmp_path, env):
    run = _run(tmp_path)
    _bash(env, f'figures "{run}"; copy_results "{run}"')
    dest = Path(env["RESULTS"]) / "varcon-s0"
    files = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file())
    assert files == ["config.yaml", "eval/linear.json", "figures/figures.json", "metrics.jsonl"]
    assert not list(Path(env["RESULTS"]).glob(".tmp-*"))  # the temporary copy was moved
