"""Each rank resumes its own random stream (2 gloo processes under torchrun).

An encoder that draws random numbers in its forward pass (stochastic depth here, as
``timm`` backbones with ``drop_path_rate``; dropout alike) makes every rank's stream part of
the result: an interrupted and resumed run
equals the uninterrupted one only if each rank gets back the state it saved. Checkpoints of
format version 1 held rank 0's state only, which every rank restored.
"""

import os
import subprocess
import sys
import textwrap

import pytest
import torch

pytestmark = pytest.mark.slow

SCRIPT = textwrap.dedent(
    """
    import faulthandler, os, pathlib, signal, sys
    import torch.distributed as dist
    # a hang shows where each rank waits (stderr, which the test prints on a timeout)
    faulthandler.dump_traceback_later(int(os.environ["HANG_DUMP_S"]), exit=False)
    from torch import nn
    from torchvision.ops import StochasticDepth
    import varcon.engine.pretrain as P
    from varcon.engine import TrainingInterrupted
    from varcon.models import register_model
    from varcon.runtime.config import apply_overrides, config_from_dict, read_yaml
    from varcon.runtime.config import resolve_config_path

    class Residual(nn.Module):  # x + StochasticDepth(relu(fc(x))): a block dropped per row
        def __init__(self, width, p):
            super().__init__()
            self.fc, self.drop = nn.Linear(width, width), StochasticDepth(p, "row")

        def forward(self, x):
            return x + self.drop(self.fc(x).relu())

    @register_model("stochastic_depth_mlp")
    def stochastic_depth_mlp(in_channels=1, image_size=8, width=32, p=0.5):
        encoder = nn.Sequential(nn.Flatten(), nn.Linear(in_channels * image_size ** 2, width),
                                nn.ReLU(), Residual(width, p), Residual(width, p))
        encoder.out_dim = width
        return encoder

    data = read_yaml(resolve_config_path("digits"))
    reference = os.environ.get("REFERENCE_DIR")
    if reference:  # the uninterrupted run first, in the same launch (one torchrun fewer)
        # one process group for both runs: pretrain uses a group that is open and leaves it
        # open (re-opening the default group in one launch can read the closed one's address)
        dist.init_process_group("gloo")
        P.pretrain(config_from_dict(apply_overrides(
            data, [*sys.argv[1:], f"output_dir={reference}"])))
        assert dist.is_initialized(), "pretrain closed a process group it did not open"

    stop_at = int(os.environ.get("STOP_AT", "0"))
    real_step, steps = P.train_step, [0]

    def step(*args, **kwargs):  # every rank signals itself after the same step
        result = real_step(*args, **kwargs)
        steps[0] += 1
        if steps[0] == stop_at:
            os.kill(os.getpid(), signal.SIGTERM)
        return result

    P.train_step = step
    cfg = config_from_dict(apply_overrides(data, sys.argv[1:]))
    try:
        P.pretrain(cfg)
    except TrainingInterrupted:  # torchrun exits 1 on any failure: a marker tells this one
        pathlib.Path(cfg.output_dir, f"interrupted-rank{os.environ['RANK']}").touch()
        sys.exit(3)
    """
)

COMMON = [
    "model.encoder=stochastic_depth_mlp", "optim.epochs=2", "optim.warmup_epochs=0",
    "optim.batch_size=128", "train.max_steps_per_epoch=4", "linear.run_after_pretrain=false",
    "train.progress=off", "train.tau2_every=0", "train.log_every=3",
]


TIMEOUT_S = 300  # the launch takes 20-70 s on 2 cores


def _text(out: bytes | str | None) -> str:
    return out.decode(errors="replace") if isinstance(out, bytes) else (out or "")


def torchrun(tmp_path, *args, stop_at=0, expect=0, reference=None):
    script = tmp_path / "train_script.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "STOP_AT": str(stop_at),
           "REFERENCE_DIR": str(reference or ""), "HANG_DUMP_S": str(TIMEOUT_S - 30)}
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "torch.distributed.run", "--standalone",
             "--nproc_per_node=2", str(script), *args],
            capture_output=True, text=True, timeout=TIMEOUT_S, env=env,
        )
    except subprocess.TimeoutExpired as e:  # the ranks' stacks, dumped 30 s before
        pytest.fail(f"torchrun hung for {TIMEOUT_S} s; stdout:\n{_text(e.stdout)[-3000:]}\n"
                    f"stderr (stacks):\n{_text(e.stderr)[-12000:]}")
    assert proc.returncode == expect, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc


def test_two_process_sigterm_and_resume_equals_uninterrupted_with_stochastic_depth(tmp_path):
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    # signalled after the 5th step (epoch 2, batch 0): with several processes the ranks agree
    # at the next read of the device (every train.log_every=3 steps: global step 6)
    proc = torchrun(tmp_path, f"output_dir={parts}", *COMMON, stop_at=5, expect=1,
                    reference=whole)
    # both ranks stopped on the signal (exit 1 alone could be any failure)
    assert sorted(p.name for p in parts.glob("interrupted-rank*")) == [
        "interrupted-rank0", "interrupted-rank1"], proc.stdout[-3000:] + proc.stderr[-5000:]
    interrupted = torch.load(parts / "checkpoints" / "last.pt", weights_only=True)
    assert (interrupted["epoch"], interrupted["step_in_epoch"]) == (1, 3)
    assert len(interrupted["rng_per_rank"]) == 2
    # the ranks' streams differ (seed + rank), so restoring rank 0's on both would show
    assert not torch.equal(interrupted["rng_per_rank"][0]["torch"],
                           interrupted["rng_per_rank"][1]["torch"])
    proc = torchrun(tmp_path, f"output_dir={parts}", f"resume={parts}", *COMMON)
    assert "resumed from" in proc.stdout
    a = torch.load(whole / "checkpoints" / "last.pt", weights_only=True)["model"]
    b = torch.load(parts / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"{len(different)} of {len(a)} tensors differ, e.g. {different[:3]}"
