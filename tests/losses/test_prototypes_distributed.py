"""Two gloo processes on CPU: ``prototypes="ema"`` keeps the same class prototypes on
every rank, equal to one process training on the concatenated batches.

Each rank trains a DDP linear model for a few SGD steps on its uneven share of every
global batch (so classes are missing from one rank, or from the whole global batch),
then saves its loss module's buffers, the losses and the weights.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from glootools import gloo_group, sgd_steps, spawn_gloo
from varcon.losses import VarConLoss

pytestmark = pytest.mark.slow

WORLD = 2
IN_DIM, OUT_DIM, NUM_CLASSES = 6, 5, 9
SPLIT = (5, 8)  # rows of every global batch held by rank 0 and rank 1
STEPS = 4


def _batches():
    """STEPS global batches of 13 rows, each of 4 classes (2 step, ..., 2 step + 3 mod 8),
    shuffled: class 8 never occurs, the others come and go."""
    g = torch.Generator().manual_seed(7)
    out = []
    for step in range(STEPS):
        cycle = (torch.arange(sum(SPLIT)) + 2 * step) % 4 + 2 * step
        labels = cycle[torch.randperm(sum(SPLIT), generator=g)] % 8
        out.append((torch.randn(sum(SPLIT), IN_DIM, generator=g, dtype=torch.float64), labels))
    return out


def _train(model, rows):
    """SGD on the loss; ``rows`` picks this process's rows of each global batch."""
    loss_fn = VarConLoss(num_classes=NUM_CLASSES, prototypes="ema", momentum=0.6).double()
    return loss_fn, sgd_steps(model, loss_fn, _batches(), rows)


def _model():
    torch.manual_seed(3)
    return torch.nn.Linear(IN_DIM, OUT_DIM).double()


def _worker(rank, world, init_file, out_dir):
    with gloo_group(rank, world, init_file):
        start = sum(SPLIT[:rank])
        ddp = torch.nn.parallel.DistributedDataParallel(_model())
        loss_fn, losses = _train(ddp, slice(start, start + SPLIT[rank]))
        torch.save({"buffers": loss_fn.state_dict(), "losses": losses,
                    "weights": ddp.module.state_dict()},
                   os.path.join(out_dir, f"rank{rank}.pt"))
        del ddp


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    out_dir = spawn_gloo(_worker, WORLD, tmp_path_factory.mktemp("ddp_prototypes"))
    return [torch.load(Path(out_dir) / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]


def test_batches_leave_classes_out_of_a_rank_and_of_the_global_batch():
    for _, y in _batches():
        assert len(set(y.tolist())) < NUM_CLASSES - 1
    r0 = [set(y[: SPLIT[0]].tolist()) for _, y in _batches()]
    assert any(len(s) < len(set(y.tolist())) for s, (_, y) in zip(r0, _batches(), strict=True))


def test_prototypes_identical_on_every_rank_and_to_one_process(results):
    b0, b1 = results[0]["buffers"], results[1]["buffers"]
    for key in b0:  # bit for bit across ranks
        assert torch.equal(b0[key], b1[key]), key

    model = _model()
    single, losses = _train(model, slice(None))
    assert not dist.is_initialized()
    want = single.state_dict()
    assert torch.equal(b0["class_seen"], want["class_seen"])
    assert want["class_seen"][:8].all() and not want["class_seen"][8]
    torch.testing.assert_close(b0["class_prototypes"], want["class_prototypes"],
                               rtol=1e-10, atol=1e-12)
    for res in results:  # the same global-batch losses and the exact gradient each step
        torch.testing.assert_close(res["losses"], losses, rtol=1e-10, atol=1e-12)
        for k, v in model.state_dict().items():
            torch.testing.assert_close(res["weights"][k], v, rtol=1e-8, atol=1e-10)
    assert not torch.equal(results[0]["weights"]["weight"], _model().weight)  # it trained
