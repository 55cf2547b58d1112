"""``torchrun`` on one GPU: the CLI with ``train.device=cuda``, and NCCL through varcon's
multi-process code path (DDP, the all-reduce of the step's flags, the evaluation's gathers)
with a process group of one rank."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from varcon.runtime.checkpoint import load_checkpoint

SRC = Path(__file__).resolve().parents[2] / "src"
COMMON = ["optim.epochs=2", "optim.warmup_epochs=0", "optim.batch_size=64",
          "train.max_steps_per_epoch=3", "train.progress=off", "train.tau2_every=0"]

# Under torchrun with one process varcon makes no process group (nothing to synchronise),
# so this script makes an NCCL group itself and lets the engine take its multi-process path
# (DistContext.distributed) with that one rank: DDP with device_ids, the flags' all-reduce,
# barriers, broadcast_object, gather_strided in the online kNN and the final evaluation.
NCCL_SCRIPT = r"""
import sys
import torch
import torch.distributed as dist
import varcon.runtime.distributed as vdist
from varcon.engine.pretrain import pretrain
from varcon.runtime.config import apply_overrides, config_from_dict, read_yaml
from varcon.runtime.config import resolve_config_path

torch.cuda.set_device(0)
dist.init_process_group("nccl", device_id=torch.device("cuda", 0))
assert dist.get_backend() == "nccl", dist.get_backend()
x = torch.ones(4, device="cuda")
dist.all_reduce(x)
assert x.tolist() == [1.0] * 4, x
vdist.DistContext.distributed = property(lambda self: dist.is_initialized())
cfg = config_from_dict(apply_overrides(read_yaml(resolve_config_path("digits")), sys.argv[1:]))
summary = pretrain(cfg)  # tears the group down at the end
print("NCCL_RUN_OK", summary.get("knn_top1", summary.get("linear_top1")), flush=True)
"""


def torchrun(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "OMP_NUM_THREADS": "2"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1",
         *args], capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert proc.returncode == 0, \
        f"torchrun failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc


def check_run(run: Path) -> None:
    state = load_checkpoint(run)
    assert state["epoch"] == 2, f"checkpoint at epoch {state['epoch']}"
    bad = [k for k, v in state["model"].items()
           if v.is_floating_point() and not torch.isfinite(v).all()]
    assert not bad, f"non-finite weights: {bad[:5]}"
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [r.get("loss") for r in records if "epoch" in r]  # one record per epoch
    assert len(losses) == 2 and all(isinstance(v, float) and abs(v) < 1e6 for v in losses), \
        f"epoch losses {losses} (null: non-finite)"


def test_torchrun_one_process_cli_on_cuda(tmp_path, cuda_only):
    run = tmp_path / "cli"
    torchrun(tmp_path, "-m", "varcon", "pretrain", "--config", "digits",
             f"output_dir={run}", "train.device=cuda", "linear.run_after_pretrain=false",
             *COMMON)
    check_run(run)


def test_nccl_process_group_of_one_rank_through_the_engine(tmp_path, cuda_only):
    script = tmp_path / "nccl_run.py"
    script.write_text(NCCL_SCRIPT)
    run = tmp_path / "nccl"
    proc = torchrun(tmp_path, str(script), f"output_dir={run}", "train.device=cuda",
                    "train.eval_every=1", "linear.epochs=2", *COMMON)
    assert "NCCL_RUN_OK" in proc.stdout, proc.stdout[-3000:]
    check_run(run)
