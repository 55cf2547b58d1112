"""Gradient caching (train.micro_batch): the chunked step against the step it replaces."""

from __future__ import annotations

import copy
import os
import tempfile

import pytest
import torch
import torch.distributed as dist
from torch import nn

from varcon.engine.micro_batch import check_micro_batch, encode_for_loss
from varcon.losses import SupConLoss, VarConLoss
from varcon.models.heads import ProjectionHead

N_IMAGES, VIEWS, CLASSES = 16, 2, 4


def make_net(*, batchnorm: bool = False, dropout: float = 0.0, logits: bool = False) -> nn.Module:
    """Conv (+ BatchNorm) + ReLU + pool (+ dropout) + unit-norm projection (or class logits)."""
    torch.manual_seed(0)
    layers: list[nn.Module] = [nn.Conv2d(3, 8, 3, padding=1)]
    if batchnorm:
        layers.append(nn.BatchNorm2d(8))
    layers += [nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten()]
    if dropout:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(32, CLASSES) if logits else ProjectionHead(32, 32, 16))
    return nn.Sequential(*layers)


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    images = torch.randn(N_IMAGES * VIEWS, 3, 8, 8, generator=g)
    labels = torch.arange(CLASSES).repeat(N_IMAGES // CLASSES).repeat_interleave(VIEWS)
    return images, labels


def sgd_step(net: nn.Module, loss_fn: nn.Module, chunk_rows: int,
             scaler: torch.amp.GradScaler | None = None) -> float:
    """One engine step: encode, loss once on the whole batch, backward, SGD."""
    images, labels = batch()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.5, momentum=0.9, weight_decay=1e-3)
    outputs, backward = encode_for_loss(net, images, chunk_rows)
    loss = loss_fn(outputs, labels)
    optimizer.zero_grad(set_to_none=True)
    if scaler is None:
        backward(loss)
        optimizer.step()
    else:
        backward(scaler.scale(loss))
        scaler.step(optimizer)
        scaler.update()
    return float(loss.detach())


def assert_same_state(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    for key in sa:
        torch.testing.assert_close(sa[key], sb[key], msg=key)


LOSSES = {
    "varcon": lambda: VarConLoss(0.1, 0.02, num_classes=CLASSES),
    "varcon_centroid_grad": lambda: VarConLoss(0.1, 0.02, detach_centroids=False),
    "supcon": lambda: SupConLoss(0.1),
    "ce": lambda: nn.CrossEntropyLoss(),
}


@pytest.mark.parametrize("name", list(LOSSES))
def test_chunked_step_equals_full_batch_step_without_batchnorm(name):
    net = make_net(logits=name == "ce")
    full, chunked = copy.deepcopy(net), copy.deepcopy(net)
    loss_full = sgd_step(full, LOSSES[name](), chunk_rows=0)
    loss_chunked = sgd_step(chunked, LOSSES[name](), chunk_rows=4 * VIEWS)  # 4 chunks
    assert loss_chunked == pytest.approx(loss_full, rel=1e-6)
    assert_same_state(full, chunked)
    # the step did move the weights (so the comparison means something)
    assert not torch.allclose(net[0].weight, chunked[0].weight)


def test_batchnorm_chunks_behave_like_processes_without_syncbn():
    """Each chunk is normalised by its own statistics, exactly as N / chunk processes
    without SyncBatchNorm: the reference encodes each chunk separately *with* autograd
    and back-propagates the loss of the concatenation. Running statistics: once per chunk."""
    net = make_net(batchnorm=True)
    chunked, reference, full = (copy.deepcopy(net) for _ in range(3))
    rows = 4 * VIEWS
    sgd_step(chunked, VarConLoss(0.1, 0.02), chunk_rows=rows)

    images, labels = batch()
    optimizer = torch.optim.SGD(reference.parameters(), lr=0.5, momentum=0.9, weight_decay=1e-3)
    outputs = torch.cat([reference(chunk) for chunk in images.split(rows)])
    VarConLoss(0.1, 0.02)(outputs, labels).backward()
    optimizer.step()

    assert_same_state(chunked, reference)  # weights and running statistics
    bn = chunked[1]
    assert int(bn.num_batches_tracked) == len(images) // rows  # 4 updates, not 8
    # and it is not the full-batch step (BatchNorm couples the rows of a chunk)
    sgd_step(full, VarConLoss(0.1, 0.02), chunk_rows=0)
    assert not torch.allclose(full[0].weight, chunked[0].weight, atol=1e-6)


def test_dropout_is_replayed_and_the_rng_stream_continues():
    net = make_net(dropout=0.5)
    rows = 4 * VIEWS
    seen: list[torch.Tensor] = []
    hook = net[-1].register_forward_pre_hook(lambda m, args: seen.append(args[0].detach()))
    chunked, reference = net, copy.deepcopy(net)  # (the copy has no hook)
    torch.manual_seed(5)
    sgd_step(chunked, VarConLoss(0.1, 0.02), chunk_rows=rows)
    rng_after_step = torch.get_rng_state()
    hook.remove()
    n_chunks = len(seen) // 2
    assert n_chunks == 4
    for first, second in zip(seen[:n_chunks], seen[n_chunks:], strict=True):
        assert torch.equal(first, second)  # the re-encoded chunk is the one the loss saw
        assert (first == 0).any()  # dropout did drop something

    # Reference: the same chunks with autograd, one after another from the same RNG state.
    torch.manual_seed(5)
    images, labels = batch()
    optimizer = torch.optim.SGD(reference.parameters(), lr=0.5, momentum=0.9, weight_decay=1e-3)
    outputs = torch.cat([reference(chunk) for chunk in images.split(rows)])
    VarConLoss(0.1, 0.02)(outputs, labels).backward()
    optimizer.step()
    assert_same_state(chunked, reference)
    # the RNG continues as if each chunk had been encoded once
    assert torch.equal(rng_after_step, torch.get_rng_state())


def test_grad_scaler_scales_the_cached_gradient_once():
    net = make_net()
    plain, scaled = copy.deepcopy(net), copy.deepcopy(net)
    sgd_step(plain, VarConLoss(0.1, 0.02), chunk_rows=4 * VIEWS)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12)
    sgd_step(scaled, VarConLoss(0.1, 0.02), chunk_rows=4 * VIEWS, scaler=scaler)
    assert scaler.get_scale() == 2.0**12  # finite gradients: the step was taken
    assert_same_state(plain, scaled)


def test_ddp_all_reduces_once_per_step():
    """All chunks but the last back-propagate under ``no_sync``: one all-reduce per bucket
    per step (a 1-process gloo group is enough to count them), the same gradient."""
    net = make_net()
    reference = copy.deepcopy(net)
    with tempfile.TemporaryDirectory() as tmp:
        dist.init_process_group("gloo", init_method=f"file://{os.path.join(tmp, 'store')}",
                                rank=0, world_size=1)
        try:
            model = nn.parallel.DistributedDataParallel(net, bucket_cap_mb=1000)
            calls = []

            def count(state, bucket):
                calls.append(bucket.index())
                fut = torch.futures.Future()
                fut.set_result(bucket.buffer())
                return fut

            model.register_comm_hook(None, count)
            sgd_step(model, VarConLoss(0.1, 0.02), chunk_rows=4 * VIEWS)
        finally:
            dist.destroy_process_group()
    assert calls == [0]  # 4 chunks, one bucket, one all-reduce
    sgd_step(reference, VarConLoss(0.1, 0.02), chunk_rows=0)
    assert_same_state(net, reference)


def test_loss_sees_the_whole_batch_once():
    calls = []

    class Spy(nn.Module):
        def forward(self, z, y):
            calls.append(len(z))
            return VarConLoss(0.1, 0.02)(z, y)

    sgd_step(make_net(), Spy(), chunk_rows=2 * VIEWS)
    assert calls == [N_IMAGES * VIEWS]


@pytest.mark.parametrize("k, batch_, message", [
    (3, 16, r"train.micro_batch=3 must divide each process's batch of 16 .* "
            r"train.micro_batch=2"),
    (32, 16, r"train.micro_batch=32 must divide .* use train.micro_batch=16"),
])
def test_micro_batch_that_does_not_divide_is_a_clear_error(k, batch_, message):
    with pytest.raises(ValueError, match=message):
        check_micro_batch(k, batch_)
    check_micro_batch(0, batch_)  # off
    check_micro_batch(4, 16)
    with pytest.raises(ValueError, match=r"\(2 processes\)"):
        check_micro_batch(16, 8, world_size=2)
