"""Two gloo processes on CPU: ``VarConSSLLoss`` keeps the same prototypes, dead-prototype
clock and step count on every rank, equal to one process on the concatenated batches, and
DDP gets the exact gradient of the global-batch loss; with a queue (more prototypes than a
step's rows), the queue too.

Each rank holds half the images of every global batch (both views of each, on adjacent
rows); a few images carry a label (semi-supervised rows)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from glootools import gloo_group, sgd_steps, spawn_gloo
from varcon.losses import VarConSSLLoss

pytestmark = pytest.mark.slow

WORLD, IMAGES, VIEWS, IN_DIM, OUT_DIM, STEPS = 2, 8, 2, 6, 5, 4
# (K prototypes, queue length): without a queue; and K above the 16 rows of a step, balanced
# with up to 24 earlier rows (filled over the first two steps)
SETTINGS = {"plain": (4, 0), "queue": (20, 24)}


def _batches():
    g = torch.Generator().manual_seed(11)
    out = []
    for _ in range(STEPS):
        x = torch.randn(IMAGES * VIEWS, IN_DIM, generator=g, dtype=torch.float64)
        labels = torch.full((IMAGES * VIEWS,), -1, dtype=torch.long)
        labels[[2, 3]] = 1  # image 1 (both views) is labelled
        labels[[12, 13]] = 3  # image 6, held by the other rank
        out.append((x, labels))
    return out


def _train(model, rows, setting="plain"):
    k, queue_length = SETTINGS[setting]
    loss_fn = VarConSSLLoss(k, OUT_DIM, VIEWS, momentum=0.5, dead_after=2,
                            queue_length=queue_length, equal_shards=True).double()
    return loss_fn, sgd_steps(model, loss_fn, _batches(), rows)


def _model():
    torch.manual_seed(5)
    return torch.nn.Linear(IN_DIM, OUT_DIM).double()


def _worker(rank, world, init_file, out_dir):
    with gloo_group(rank, world, init_file):
        share = IMAGES * VIEWS // world
        for setting in SETTINGS:  # one process group, both settings
            ddp = torch.nn.parallel.DistributedDataParallel(_model())
            loss_fn, losses = _train(ddp, slice(rank * share, (rank + 1) * share), setting)
            torch.save({"buffers": loss_fn.state_dict(), "losses": losses,
                        "weights": ddp.module.state_dict()},
                       os.path.join(out_dir, f"{setting}-rank{rank}.pt"))
            del ddp
            dist.barrier()


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    return Path(spawn_gloo(_worker, WORLD, tmp_path_factory.mktemp("ssl")))


@pytest.mark.parametrize("setting", list(SETTINGS))
def test_prototypes_identical_on_every_rank_and_to_one_process(two_ranks, setting):
    results = [torch.load(two_ranks / f"{setting}-rank{r}.pt", weights_only=True)
               for r in range(WORLD)]
    b0, b1 = results[0]["buffers"], results[1]["buffers"]
    queued = {"queue", "queue_filled"} if SETTINGS[setting][1] else set()
    assert set(b0) == {"prototypes", "last_won", "steps"} | queued
    for key in b0:  # bit for bit across ranks
        assert torch.equal(b0[key], b1[key]), key

    model = _model()
    single, losses = _train(model, slice(None), setting)
    assert not dist.is_initialized()
    want = single.state_dict()
    assert int(want["steps"]) == STEPS and torch.equal(b0["steps"], want["steps"])
    assert torch.equal(b0["last_won"], want["last_won"])
    torch.testing.assert_close(b0["prototypes"], want["prototypes"], rtol=1e-10, atol=1e-12)
    if queued:  # the global batch's rows in the queue, in the same order on every rank
        assert int(b0["queue_filled"]) == 24 == int(want["queue_filled"])
        torch.testing.assert_close(b0["queue"], want["queue"], rtol=1e-10, atol=1e-12)
    for res in results:  # the same global-batch losses and the exact gradient each step
        torch.testing.assert_close(res["losses"], losses, rtol=1e-10, atol=1e-12)
        for k, v in model.state_dict().items():
            torch.testing.assert_close(res["weights"][k], v, rtol=1e-8, atol=1e-10)
    assert not torch.equal(results[0]["weights"]["weight"], _model().weight)  # it trained
