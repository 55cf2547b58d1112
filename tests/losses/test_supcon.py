"""SupConLoss (L_out, Khosla et al. 2020 Eq. 2): loop reference and pytorch-metric-learning."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pytorch_metric_learning.losses import SupConLoss as PMLSupConLoss
from reference import central_difference, make_batch, supcon_mean, supcon_reference

from varcon.losses import SupConLoss, supcon_loss

BATCHES = {
    "two_classes": [0, 1] * 6,
    "many_classes": [3, 0, 7, 7, 1, 3, 0, 2, 2, 9, 1, 0, 7, 4, 4, 4],
    "with_singletons": [0, 0, 1, 2, 2, 2, 3, 4, 5, 5],  # anchors 2, 6, 7 have no positive
    "one_class": [2] * 6,
}
TAUS = [0.05, 0.1, 0.5, 1.0]


def _batch(name, dtype=torch.float64, seed=0):
    z, y = make_batch(BATCHES[name], dim=12, seed=seed, spread=0.8)
    return z.to(dtype), y


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("with_num_classes", [False, True], ids=["unique", "num_classes"])
@pytest.mark.parametrize("tau", TAUS)
@pytest.mark.parametrize("name", list(BATCHES))
def test_matches_loop_reference(name, tau, with_num_classes, dtype):
    z, y = _batch(name, dtype)
    nc = int(y.max()) + 3 if with_num_classes else None
    ref = supcon_reference(z, y, tau)
    tol = {"rtol": 1e-6, "atol": 1e-10} if dtype == torch.float64 else {"rtol": 1e-4, "atol": 1e-5}

    per = SupConLoss(tau, num_classes=nc, reduction="none")(z, y)
    assert per.dtype == dtype and per.shape == (len(y),)
    np.testing.assert_allclose(per.numpy(), ref, **tol)
    mean = SupConLoss(tau, num_classes=nc)(z, y)
    np.testing.assert_allclose(mean.item(), supcon_mean(ref, y), **tol)
    total = supcon_loss(z, y, tau, num_classes=nc, reduction="sum")
    np.testing.assert_allclose(total.item(), ref.sum(), **tol)


@pytest.mark.parametrize("tau", TAUS)
@pytest.mark.parametrize("name", ["two_classes", "many_classes", "with_singletons"])
def test_matches_pytorch_metric_learning(name, tau):
    # PML's SupConLoss uses cosine similarity (it normalises) and averages the non-zero
    # per-anchor losses: the same as L_out averaged over anchors that have a positive.
    # (PML returns 0 for a batch without negatives, so one-class batches are not compared.)
    z, y = _batch(name, seed=7)
    want = PMLSupConLoss(temperature=tau)(z, y)
    got = SupConLoss(temperature=tau)(z, y)
    np.testing.assert_allclose(got.item(), want.item(), rtol=1e-6)
    # gradients too
    za, zb = z.clone().requires_grad_(), z.clone().requires_grad_()
    SupConLoss(temperature=tau)(za, y).backward()
    PMLSupConLoss(temperature=tau)(zb, y).backward()

    # PML differentiates through its own normalisation; on unit rows the tangential
    # components agree, so compare the gradients projected on the tangent space.
    def tangential(g, x):
        return g - (g * x).sum(1, keepdim=True) * x

    np.testing.assert_allclose(
        tangential(za.grad, z).numpy(), tangential(zb.grad, z).numpy(), rtol=1e-6, atol=1e-9
    )


def test_anchors_without_positives_are_excluded():
    z, y = _batch("with_singletons")
    per = supcon_loss(z, y, 0.1, reduction="none")
    lonely = torch.tensor([2, 6, 7])
    assert torch.all(per[lonely] == 0)
    others = torch.tensor([i for i in range(len(y)) if i not in lonely.tolist()])
    assert torch.all(per[others] > 0)
    mean = supcon_loss(z, y, 0.1)
    torch.testing.assert_close(mean, per[others].mean())
    assert not torch.isclose(mean, per.mean())


@pytest.mark.parametrize("labels", [[0, 1, 2, 3, 4], [7]], ids=["all_singletons", "one_row"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_no_positives_anywhere_gives_zero(labels, reduction):
    z, y = make_batch(labels, dim=6, seed=3)
    z = z.clone().requires_grad_()
    out = supcon_loss(z, y, 0.1, reduction=reduction)
    assert torch.all(out == 0)
    out.sum().backward()
    assert torch.isfinite(z.grad).all() and torch.all(z.grad == 0)


@pytest.mark.parametrize("tau", [0.1, 0.7])
@pytest.mark.parametrize("name", ["with_singletons", "one_class"])
def test_gradient_matches_finite_differences(name, tau):
    z, y = make_batch(BATCHES[name], dim=4, seed=9, spread=0.8)
    zz = z.clone().requires_grad_()
    supcon_loss(zz, y, tau).backward()

    def f(x):
        return supcon_mean(supcon_reference(x, y, tau), y)

    fd = central_difference(f, z.numpy())
    np.testing.assert_allclose(zz.grad.numpy(), fd, rtol=1e-6, atol=1e-8)


def test_non_normalised_features_are_used_as_given():
    z, y = make_batch(BATCHES["many_classes"], dim=12, seed=4, normalise=False)
    z = 0.5 * z
    got = supcon_loss(z, y, 0.5, reduction="none")
    assert torch.isfinite(got).all()
    np.testing.assert_allclose(got.numpy(), supcon_reference(z, y, 0.5), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("low", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
def test_half_precision_inputs(low):
    z, y = _batch("many_classes", torch.float32)
    z_low = z.to(low).requires_grad_()
    got = SupConLoss(0.05, reduction="none")(z_low, y)
    assert got.dtype == torch.float32 and torch.isfinite(got).all()
    got.sum().backward()
    assert z_low.grad.dtype == low and torch.isfinite(z_low.grad).all()
    rounded = z_low.detach().float()
    want = SupConLoss(0.05, reduction="none")(rounded, y)
    np.testing.assert_allclose(got.detach().numpy(), want.numpy(), rtol=1e-6, atol=1e-6)
    ref = supcon_reference(rounded, y, 0.05)
    np.testing.assert_allclose(got.detach().numpy(), ref, rtol=1e-4, atol=1e-5)


def test_small_temperature_is_stable():
    z, y = _batch("many_classes", torch.float32)
    got = supcon_loss(z, y, 0.005, reduction="none")  # logits up to 200: e^200 overflows f32
    assert torch.isfinite(got).all()
    np.testing.assert_allclose(got.numpy(), supcon_reference(z, y, 0.005), rtol=1e-4, atol=1e-3)
