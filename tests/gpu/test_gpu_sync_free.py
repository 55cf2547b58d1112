"""On a GPU, a training step that does not read the device never synchronises:
``torch.cuda.set_sync_debug_mode("error")`` turns any synchronisation into an error during
those steps (CPU proxy of the same check: tests/engine/test_sync_free_step.py)."""

from __future__ import annotations

from typing import Any

import pytest
import torch

import varcon.engine.pretrain as pretrain_mod
from short_runs import digits_config


@pytest.mark.parametrize("overrides", [(), ("loss.prototypes=ema",), ("method=supcon",),
                                       ("train.micro_batch=16",)],
                         ids=["varcon", "varcon-ema", "supcon", "micro-batch"])
def test_no_synchronisation_between_reads(tmp_path, cuda_only, monkeypatch, overrides):
    real_step = pretrain_mod.train_step
    steps: list[int] = []
    log_every, per_epoch = 3, 7

    def step(*args: Any, **kwargs: Any) -> Any:
        g = len(steps)
        steps.append(g)
        reads = g % log_every == 0 or g % per_epoch == per_epoch - 1
        # this step and the loop's bookkeeping after it, until the next step begins
        torch.cuda.set_sync_debug_mode(0 if reads else "error")
        return real_step(*args, **kwargs)

    monkeypatch.setattr(pretrain_mod, "train_step", step)
    cfg = digits_config(tmp_path, cuda_only, "optim.epochs=2",
                        f"train.max_steps_per_epoch={per_epoch}", f"train.log_every={log_every}",
                        "train.tau2_every=1", "data.num_workers=0", *overrides)
    try:
        pretrain_mod.pretrain(cfg)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert steps == list(range(2 * per_epoch))
