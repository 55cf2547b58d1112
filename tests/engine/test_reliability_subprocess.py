"""Real signals to a real ``python -m varcon pretrain`` process: SIGTERM mid-epoch then
``--resume`` (bit-exact against an uninterrupted run), and repeated ``kill -9``."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from varcon.runtime.checkpoint import load_checkpoint

pytestmark = pytest.mark.slow

# 42 steps of 32 images per epoch, 4 epochs: a few seconds, long enough to interrupt.
ARGS = [
    "optim.epochs=4", "optim.warmup_epochs=1", "optim.batch_size=32",
    "linear.run_after_pretrain=false", "train.progress=off", "train.tau2_every=0",
]
TIMEOUT = 300  # the machine is shared and loaded


def env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def varcon(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "varcon", *argv], cwd=cwd, env=env(),
                          capture_output=True, text=True, timeout=TIMEOUT)


def start(*argv: str, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "varcon", *argv], cwd=cwd, env=env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(cond, proc: subprocess.Popen[str], what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not cond():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"process ended (status {proc.returncode}) before {what}:\n{out}\n{err}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, torch.Tensor]:
    tmp = tmp_path_factory.mktemp("ref")
    done = varcon("pretrain", "--output-dir", str(tmp / "run"), *ARGS, cwd=tmp)
    assert done.returncode == 0, done.stderr
    return load_checkpoint(tmp / "run")["model"]


def test_sigterm_mid_epoch_then_resume_is_bit_exact(tmp_path, reference):
    run = tmp_path / "run"
    proc = start("pretrain", "--output-dir", str(run), *ARGS, cwd=tmp_path)
    metrics = run / "metrics.jsonl"
    wait_for(lambda: metrics.is_file() and metrics.read_text().count("\n") >= 1, proc,
             "the first epoch ended")
    time.sleep(0.3)  # into epoch 2
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 143, (out, err)
    assert "interrupted: received SIGTERM: saved" in err
    assert f"varcon pretrain --resume {run}" in err
    assert "Traceback" not in err
    state = load_checkpoint(run)
    assert state["epoch"] < 4 and 0 < state["step_in_epoch"] < 42, (state["epoch"],
                                                                     state["step_in_epoch"])

    done = varcon("pretrain", "--resume", str(run), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"resumed from {run}: epoch {state['epoch'] + 1}, step {state['step_in_epoch']}" \
        in done.stdout
    assert same_weights(load_checkpoint(run)["model"], reference)


def test_kill_9_never_corrupts_last_pt(tmp_path, reference):
    run = tmp_path / "run"
    rng = random.Random(1234)
    kills = 0
    argv = ["pretrain", "--output-dir", str(run), *ARGS]
    for _ in range(3):
        proc = start(*argv, cwd=tmp_path)
        # once the run directory exists, --resume continues it (even before a checkpoint)
        wait_for((run / "config.yaml").is_file, proc, "the run directory was created")
        time.sleep(rng.uniform(0.0, 2.5))
        if proc.poll() is None:
            proc.kill()
            kills += 1
        proc.communicate(timeout=TIMEOUT)
        last = run / "checkpoints" / "last.pt"
        if last.exists():
            state = load_checkpoint(last)  # never torn, whatever the moment of the kill
            assert state["step_in_epoch"] == 0 and 0 < state["epoch"] <= 4
        argv = ["pretrain", "--resume", str(run)]
    assert kills >= 1
    done = varcon(*argv, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert load_checkpoint(run)["epoch"] == 4
    # resuming from epoch boundaries (or from scratch) reproduces the uninterrupted run
    assert same_weights(load_checkpoint(run)["model"], reference)
