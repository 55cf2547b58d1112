"""A process group the caller opened is used as it is and left open; varcon closes only the
group it opened (re-opening the default group in one torchrun launch is unreliable: the
store keeps the closed group's addresses)."""

import os
from pathlib import Path

import torch
import torch.distributed as dist

from glootools import spawn_gloo
from varcon.runtime.distributed import DistContext, setup_distributed, teardown


def _callers_group_worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    # as torchrun sets them: setup_distributed would open a group of its own without one
    os.environ.update(WORLD_SIZE=str(world), RANK=str(rank), LOCAL_RANK=str(rank))
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=world)
    ctx = setup_distributed("cpu")
    teardown(ctx)
    open_after = dist.is_initialized()
    if open_after:  # still usable: a collective over the caller's group
        total = torch.ones(1)
        dist.all_reduce(total)
        dist.destroy_process_group()
    Path(out_dir, f"rank{rank}.txt").write_text(
        f"{ctx.world_size} {ctx.owns_group} {open_after}")


def test_a_callers_group_is_used_and_left_open(tmp_path):
    out = spawn_gloo(_callers_group_worker, 2, tmp_path)
    assert [(out / f"rank{r}.txt").read_text() for r in range(2)] == ["2 False True"] * 2


def test_teardown_closes_the_group_it_opened(tmp_path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0,
                            world_size=1)
    try:  # as setup_distributed returns it after init_process_group under torchrun
        teardown(DistContext(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"),
                             owns_group=True))
        assert not dist.is_initialized()
    finally:  # a failure here leaves no group behind for the next test
        if dist.is_initialized():
            dist.destroy_process_group()


def test_one_process_without_torchrun_opens_no_group(monkeypatch):
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    ctx = setup_distributed("cpu")
    assert (ctx.world_size, ctx.owns_group, dist.is_initialized()) == (1, False, False)
    teardown(ctx)
