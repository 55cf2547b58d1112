"""Two gloo processes on CPU, DDP: the gathered losses give the single-process gradient.

One spawn (module-scoped fixture, ``glootools.spawn_gloo``) runs every case; each rank
saves its loss and parameter gradients to a file, and the tests compare them with one
process computing the same loss on the whole batch without DDP.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F

from glootools import gloo_group, spawn_gloo
from varcon.losses import SupConLoss, VarConLoss

pytestmark = pytest.mark.slow

WORLD = 2
IN_DIM, OUT_DIM = 6, 8
# 20 rows, classes 0..3. With the 7/13 split rank 0 holds 3x0, 3x1, 1x2 and no class 3;
# rank 1 holds 2x0, 1x1, 5x2, 5x3.
LABELS = [0, 1, 0, 2, 1, 0, 1, 3, 2, 2, 0, 3, 2, 3, 2, 3, 0, 1, 3, 2]

# name -> (loss, kwargs, split)
CASES = {
    "varcon_exact_7_13": ("varcon", {}, (7, 13)),
    "varcon_per_rank_7_13": ("varcon", {"gradient_scale": "per_rank"}, (7, 13)),
    "varcon_exact_13_7_num_classes": ("varcon", {"num_classes": 6}, (13, 7)),
    "varcon_exact_free_centroids": ("varcon", {"detach_centroids": False}, (7, 13)),
    "varcon_exact_none": ("varcon", {"reduction": "none", "epsilon": 0.05}, (7, 13)),
    "varcon_exact_0_20": ("varcon", {}, (0, 20)),
    "supcon_exact_7_13": ("supcon", {}, (7, 13)),
    "supcon_per_rank_7_13": ("supcon", {"gradient_scale": "per_rank"}, (7, 13)),
    "supcon_exact_10_10_sum": ("supcon", {"reduction": "sum", "temperature": 0.5}, (10, 10)),
    # equal shards (what the engine guarantees): no exchange of row counts
    "varcon_exact_10_10_equal_shards": ("varcon", {"equal_shards": True, "num_classes": 4},
                                        (10, 10)),
    "supcon_exact_10_10_equal_shards": ("supcon", {"equal_shards": True}, (10, 10)),
}


def _data():
    g = torch.Generator().manual_seed(1234)
    x = torch.randn(len(LABELS), IN_DIM, generator=g, dtype=torch.float64)
    return x, torch.tensor(LABELS)


def _model():
    torch.manual_seed(99)
    return torch.nn.Linear(IN_DIM, OUT_DIM).double()


def _loss_fn(kind, kwargs):
    kwargs = dict(kwargs)
    if kind == "varcon":
        kwargs.setdefault("temperature", 0.1)
        return VarConLoss(**kwargs)
    kwargs.setdefault("temperature", 0.1)
    return SupConLoss(**kwargs)


def _forward_backward(model, kind, kwargs, x, y):
    out = _loss_fn(kind, kwargs)(F.normalize(model(x), dim=1), y)
    (out.sum() if out.dim() else out).backward()
    return out.detach()


def _worker(rank, world, init_file, out_dir):
    with gloo_group(rank, world, init_file):
        x, y = _data()
        for name, (kind, kwargs, split) in CASES.items():
            start = sum(split[:rank])
            stop = start + split[rank]
            ddp = torch.nn.parallel.DistributedDataParallel(_model())
            calls = []
            real_all_gather = dist.all_gather
            dist.all_gather = (lambda *a, _calls=calls, _real=real_all_gather, **k:
                               _calls.append(1) or _real(*a, **k))
            try:
                out = _forward_backward(ddp, kind, kwargs, x[start:stop], y[start:stop])
            finally:
                dist.all_gather = real_all_gather
            grads = {k: p.grad.detach().clone() for k, p in ddp.module.named_parameters()}
            torch.save({"out": out, "grads": grads, "all_gathers": len(calls)},
                       os.path.join(out_dir, f"{name}_{rank}.pt"))
            del ddp


@pytest.fixture(scope="module")
def ddp_results(tmp_path_factory):
    out_dir = spawn_gloo(_worker, WORLD, tmp_path_factory.mktemp("ddp"))
    return {
        name: [
            torch.load(Path(out_dir) / f"{name}_{r}.pt", weights_only=True) for r in range(WORLD)
        ]
        for name in CASES
    }


def _single_process(name):
    kind, kwargs, _ = CASES[name]
    assert not dist.is_initialized()
    x, y = _data()
    model = _model()
    out = _forward_backward(model, kind, kwargs, x, y)
    return out, {k: p.grad.detach().clone() for k, p in model.named_parameters()}


def test_split_has_uneven_class_counts_and_a_missing_class():
    y = torch.tensor(LABELS)
    r0, r1 = y[:7], y[7:]
    assert 3 not in r0.tolist() and 3 in r1.tolist()
    assert torch.bincount(r0, minlength=4).tolist() != torch.bincount(r1, minlength=4).tolist()


@pytest.mark.parametrize("name", [n for n in CASES if "per_rank" not in n])
def test_exact_gradient_equals_single_process(ddp_results, name):
    want_out, want_grads = _single_process(name)
    for rank, res in enumerate(ddp_results[name]):
        torch.testing.assert_close(res["out"], want_out, rtol=1e-10, atol=1e-12, msg=f"rank {rank}")
        for k, g in want_grads.items():
            torch.testing.assert_close(
                res["grads"][k], g, rtol=1e-6, atol=1e-9, msg=f"rank {rank} grad {k}"
            )


def test_equal_shards_exchange_no_row_counts(ddp_results):
    """Features and labels only: 2 all-gathers, not the 3 that uneven shards need."""
    for name in CASES:
        want = 2 if "equal_shards" in name else 3
        assert [r["all_gathers"] for r in ddp_results[name]] == [want] * WORLD, name


@pytest.mark.parametrize("name", [n for n in CASES if "per_rank" in n])
def test_per_rank_gradient_is_one_over_world(ddp_results, name):
    want_out, want_grads = _single_process(name)
    for res in ddp_results[name]:
        torch.testing.assert_close(res["out"], want_out, rtol=1e-10, atol=1e-12)
        for k, g in want_grads.items():
            torch.testing.assert_close(res["grads"][k], g / WORLD, rtol=1e-6, atol=1e-9)
            assert not torch.allclose(res["grads"][k], g, rtol=1e-3)


def test_ranks_agree_and_gradients_are_not_trivial(ddp_results):
    for name, results in ddp_results.items():
        g0, g1 = results[0]["grads"], results[1]["grads"]
        for k in g0:
            torch.testing.assert_close(g0[k], g1[k], rtol=0, atol=0, msg=f"{name} {k}")
            assert g0[k].abs().max() > 1e-4, f"{name}: gradient of {k} vanishes"


def test_free_centroids_gradient_differs_from_detached(ddp_results):
    detached = ddp_results["varcon_exact_7_13"][0]["grads"]["weight"]
    free = ddp_results["varcon_exact_free_centroids"][0]["grads"]["weight"]
    assert not torch.allclose(detached, free, rtol=1e-3)
