"""``runtime.distributed.gather_strided``: rows strided over gloo processes come back in input
order, exact, on every rank or on rank 0 only, and never more than ``world x chunk`` rows of a
gather are on a device at once."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from glootools import gloo_group, spawn_gloo
from varcon.runtime.distributed import DistContext, gather_strided

WIDTH = 3


def _rows(positions: range) -> torch.Tensor:
    """Features that name their input position: row i is ``[i, 10 i, 100 i] + 0.5``."""
    index = torch.tensor(list(positions), dtype=torch.float64)
    return (index[:, None] * torch.tensor([1.0, 10.0, 100.0], dtype=torch.float64) + 0.5).float()


CASES = ((11, True), (11, False), (2, True), (2, False))  # (total rows, everywhere)
WORLD = 3  # 11 rows: shards of 4, 4 and 3; 2 rows: rank 2 holds none (and knows no width)


def _worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    import torch.distributed as dist

    import varcon.runtime.distributed as D

    with gloo_group(rank, world, init_file):
        real = dist.all_gather
        try:
            gathered: list[int] = []  # rows of each all-gather, every rank's part together

            def counting(parts: list[torch.Tensor], tensor: torch.Tensor) -> object:
                gathered.append(sum(p.shape[0] for p in parts))
                return real(parts, tensor)

            D.dist.all_gather = counting  # the module's own handle on torch.distributed
            D.GATHER_CHUNK = 2  # the default chunk, made tiny
            ctx = DistContext(rank=rank, world_size=world, local_rank=rank,
                              device=torch.device("cpu"))
            results = []
            for total, everywhere in CASES:
                gathered.clear()
                mine = range(rank, total, world)
                feats = _rows(mine) if len(mine) else torch.zeros(0, 0)  # an empty extraction
                labels = torch.tensor(list(mine), dtype=torch.long)
                got, got_labels = gather_strided(ctx, [feats, labels], total,
                                                 everywhere=everywhere)
                results.append({"feats": got, "labels": got_labels, "gathered": list(gathered)})
            torch.save(results, Path(out_dir) / f"{rank}.pt")
        finally:
            dist.all_gather = real


def test_rows_come_back_in_input_order_a_chunk_at_a_time(tmp_path):
    out_dir = spawn_gloo(_worker, WORLD, tmp_path)
    by_rank = [torch.load(out_dir / f"{r}.pt", weights_only=True) for r in range(WORLD)]
    for rank, results in enumerate(by_rank):
        for (total, everywhere), result in zip(CASES, results, strict=True):
            per_rank = len(range(0, total, WORLD))
            # features and labels, 2 rows per rank at a time: never more than world x chunk
            assert result["gathered"] == [WORLD * 2] * (2 * len(range(0, per_rank, 2)))
            if everywhere or rank == 0:
                assert torch.equal(result["feats"], _rows(range(total)))  # exact, in order
                assert result["labels"].tolist() == list(range(total))
            else:
                assert result["feats"].shape == (0, WIDTH) and result["labels"].numel() == 0


def test_one_process_returns_the_shards():
    ctx = DistContext(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    feats, labels = _rows(range(5)), torch.arange(5)
    got, got_labels = gather_strided(ctx, [feats, labels], 5)
    assert torch.equal(got, feats) and torch.equal(got_labels, labels)


def test_a_shard_of_the_wrong_size_is_refused():
    ctx = DistContext(rank=1, world_size=2, local_rank=1, device=torch.device("cpu"))
    with pytest.raises(ValueError, match="rank 1 of 2 holds 3 rows"):
        gather_strided(ctx, [torch.zeros(3, 2)], 5)
