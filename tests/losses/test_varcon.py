"""VarConLoss against the independent float64 NumPy reference (values, stats, gradients)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from reference import (
    central_difference,
    class_centroids,
    make_batch,
    varcon_reference,
)

from varcon.losses import VarConLoss, VarConStats, varcon_loss

# ---------------------------------------------------------------------------------------
# Batches


def _batch(kind: str, dtype=torch.float64):
    """A named batch of L2-normalised features (float64 master copy cast to ``dtype``)."""
    if kind == "one_class":
        z, y = make_batch([3] * 7, seed=1)
    elif kind == "two_classes":
        z, y = make_batch([0, 1] * 5, seed=2)
    elif kind == "many_classes":
        rng = np.random.default_rng(3)
        counts = [1, 2, 3, 4, 2, 1, 5, 3, 2, 2, 1, 4]
        labels = rng.permutation(np.repeat(np.arange(12), counts)) * 3 + 1  # non-contiguous
        z, y = make_batch(labels, dim=16, seed=3)
    elif kind == "singletons":
        z, y = make_batch([0, 0, 0, 1, 2, 3, 3, 4], seed=4)  # classes 1, 2, 4 have one sample
    elif kind == "confident":
        z, y = _orthogonal_clusters(4, 5, spread=0.02, seed=5)
    elif kind == "unconfident":
        # Tight clusters, but one sample of each class sits on another class's direction.
        z, y = _orthogonal_clusters(4, 6, spread=0.02, seed=6)
        for c in range(4):
            z[6 * c] = F.normalize(torch.eye(16, dtype=z.dtype)[(c + 1) % 4], dim=0)
    else:  # pragma: no cover
        raise KeyError(kind)
    return z.to(dtype), y


def _orthogonal_clusters(num_classes, per_class, *, spread, seed, dim=16):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(num_classes).repeat_interleave(per_class)
    z = torch.eye(dim, dtype=torch.float64)[y]
    z = z + spread * torch.randn(z.shape, generator=g, dtype=torch.float64)
    return F.normalize(z, dim=1), y


KINDS = ["one_class", "two_classes", "many_classes", "singletons", "confident", "unconfident"]
TAU1 = [0.05, 0.1, 0.3, 1.0]
EPS_FRACTION = [0.0, 0.25, 0.5]


def _tolerances(dtype, tau1, scale=1.0):
    """rtol as in the requirements (1e-6 float64, 1e-4 float32).

    ``scale`` is the batch's loss scale (mean per-sample loss): per-sample values are
    compared to 1e-4 relative to their own value or to the batch scale, so samples
    whose loss is ~0 next to others are allowed the batch's absolute error.
    """
    if dtype == torch.float64:
        return {"rtol": 1e-6, "atol": 1e-6 * scale + 1e-15}
    return {"rtol": 1e-4, "atol": 1e-4 * scale + 1e-15}


# ---------------------------------------------------------------------------------------
# Exactness


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("with_num_classes", [False, True], ids=["unique", "num_classes"])
@pytest.mark.parametrize("eps_fraction", EPS_FRACTION)
@pytest.mark.parametrize("tau1", TAU1)
@pytest.mark.parametrize("kind", KINDS)
def test_matches_reference(kind, tau1, eps_fraction, with_num_classes, dtype):
    z, y = _batch(kind, dtype)
    eps = eps_fraction * tau1
    num_classes = int(y.max()) + 4 if with_num_classes else None  # absent classes too
    ref = varcon_reference(z, y, tau1, eps)  # on the same (possibly rounded) inputs
    tol = _tolerances(dtype, tau1, scale=ref.loss.mean())

    loss_fn = VarConLoss(tau1, eps, num_classes=num_classes, reduction="none")
    per_sample, stats = loss_fn(z, y, return_stats=True)
    assert per_sample.dtype == dtype and per_sample.shape == (len(y),)
    np.testing.assert_allclose(per_sample.numpy(), ref.loss, **tol)
    np.testing.assert_allclose(stats.kl.numpy(), ref.kl, **tol)
    np.testing.assert_allclose(stats.nll.numpy(), ref.nll, **tol)
    np.testing.assert_allclose(stats.confidence.numpy(), ref.confidence, rtol=tol["rtol"])
    np.testing.assert_allclose(stats.tau2.numpy(), ref.tau2, rtol=tol["rtol"])
    assert int(stats.classes_in_batch) == ref.num_classes

    mean = VarConLoss(tau1, eps, num_classes=num_classes)(z, y)
    assert mean.shape == ()
    np.testing.assert_allclose(mean.item(), ref.loss.mean(), rtol=tol["rtol"], atol=1e-15)
    total = varcon_loss(z, y, tau1, eps, num_classes=num_classes, reduction="sum")
    np.testing.assert_allclose(total.item(), ref.loss.sum(), rtol=tol["rtol"], atol=1e-15)


def test_reference_batches_cover_the_intended_regimes():
    """The 'confident' and 'unconfident' batches really are extreme at tau1 = 0.05."""
    conf = varcon_reference(*_batch("confident"), 0.05, 0.025).confidence
    assert conf.min() > 0.999
    unconf = varcon_reference(*_batch("unconfident"), 0.05, 0.025).confidence
    assert np.sort(unconf)[:4].max() < 1e-6
    assert varcon_reference(*_batch("one_class"), 0.1, 0.02).loss.max() == 0.0


def test_default_hyperparameters_are_the_papers():
    z, y = _batch("many_classes")
    ref = varcon_reference(z, y, 0.1, 0.02)
    np.testing.assert_allclose(VarConLoss()(z, y).item(), ref.loss.mean(), rtol=1e-10)
    np.testing.assert_allclose(varcon_loss(z, y).item(), ref.loss.mean(), rtol=1e-10)


def test_num_classes_equal_to_classes_present_and_unordered_labels():
    z, y = _batch("singletons")
    ref = varcon_reference(z, y, 0.1, 0.05)
    got = varcon_loss(z, y, 0.1, 0.05, num_classes=int(y.max()) + 1, reduction="none")
    np.testing.assert_allclose(got.numpy(), ref.loss, rtol=1e-10, atol=1e-12)
    # int32 labels work in both modes
    for nc in (None, 9):
        got = varcon_loss(z, y.int(), 0.1, 0.05, num_classes=nc, reduction="none")
        np.testing.assert_allclose(got.numpy(), ref.loss, rtol=1e-10, atol=1e-12)


def test_non_normalised_features_use_the_rows_as_given():
    z, y = make_batch([0, 0, 1, 1, 2, 2, 2], seed=11, normalise=False)
    z = z * torch.linspace(0.3, 3.0, len(y), dtype=z.dtype)[:, None]
    ref = varcon_reference(z, y, 0.2, 0.05)
    got = varcon_loss(z, y, 0.2, 0.05, reduction="none")
    assert torch.isfinite(got).all()
    np.testing.assert_allclose(got.numpy(), ref.loss, rtol=1e-9, atol=1e-12)
    # ...and that differs from the loss on the normalised rows
    ref_norm = varcon_reference(F.normalize(z, dim=1), y, 0.2, 0.05)
    assert not np.allclose(ref.loss, ref_norm.loss, rtol=1e-3)


# ---------------------------------------------------------------------------------------
# Gradients


def _grad(z, y, **kwargs):
    z = z.clone().requires_grad_(True)
    loss = varcon_loss(z, y, **kwargs)
    (g,) = torch.autograd.grad(loss, z)
    return loss.detach(), g.numpy()


GRAD_CASES = [
    # labels, tau1, eps
    ([0, 0, 1, 1, 1, 2, 2, 3], 0.1, 0.02),  # class 3 is a singleton
    ([0, 1, 0, 1, 0, 1], 0.3, 0.15),
    ([2, 2, 5, 5, 7, 7, 7], 1.0, 0.5),
    ([0, 0, 1, 1, 2, 2], 0.05, 0.025),
]


@pytest.mark.parametrize("with_num_classes", [False, True], ids=["unique", "num_classes"])
@pytest.mark.parametrize(("labels", "tau1", "eps"), GRAD_CASES)
def test_gradient_detached_centroids_matches_finite_differences(
    labels, tau1, eps, with_num_classes
):
    z, y = make_batch(labels, dim=5, seed=21, spread=0.7)
    nc = int(y.max()) + 3 if with_num_classes else None
    _, g = _grad(z, y, temperature=tau1, epsilon=eps, num_classes=nc)
    frozen = class_centroids(z, y)  # held constant while perturbing

    def f(x):
        return varcon_reference(x, y, tau1, eps, centroids=frozen).loss.mean()

    fd = central_difference(f, z.numpy())
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-8)


def test_gradient_flows_through_tau2():
    """The finite-difference check above can tell a detached tau2 apart."""
    labels, tau1, eps = [0, 0, 1, 1, 1, 2, 2, 3], 0.1, 0.05
    z, y = make_batch(labels, dim=5, seed=22, spread=0.7)
    _, g = _grad(z, y, temperature=tau1, epsilon=eps)
    frozen = class_centroids(z, y)
    tau2_fixed = varcon_reference(z, y, tau1, eps).tau2

    def f_detached_tau2(x):
        return varcon_reference(
            x, y, tau1, eps, centroids=frozen, tau2_override=tau2_fixed
        ).loss.mean()

    fd_detached = central_difference(f_detached_tau2, z.numpy())
    assert np.abs(g - fd_detached).max() > 1e-4


@pytest.mark.parametrize("with_num_classes", [False, True], ids=["unique", "num_classes"])
@pytest.mark.parametrize(("labels", "tau1", "eps"), GRAD_CASES)
def test_gradient_through_centroids_matches_finite_differences(labels, tau1, eps, with_num_classes):
    z, y = make_batch(labels, dim=5, seed=23, spread=0.7)
    nc = int(y.max()) + 3 if with_num_classes else None
    _, g = _grad(z, y, temperature=tau1, epsilon=eps, num_classes=nc, detach_centroids=False)

    def f(x):  # centroids recomputed from the perturbed batch
        return varcon_reference(x, y, tau1, eps).loss.mean()

    fd = central_difference(f, z.numpy())
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-8)


def test_detach_centroids_same_value_different_gradient():
    z, y = make_batch([0, 0, 1, 1, 1, 2, 2], dim=6, seed=24, spread=0.7)
    for nc in (None, 5):
        loss_d, g_d = _grad(z, y, num_classes=nc, detach_centroids=True)
        loss_f, g_f = _grad(z, y, num_classes=nc, detach_centroids=False)
        assert loss_d.item() == pytest.approx(loss_f.item(), rel=1e-12)
        assert np.abs(g_d - g_f).max() > 1e-3
        m_d = VarConLoss(num_classes=nc, detach_centroids=True)
        m_f = VarConLoss(num_classes=nc, detach_centroids=False)
        zd, zf = z.clone().requires_grad_(), z.clone().requires_grad_()
        m_d(zd, y).backward()
        m_f(zf, y).backward()
        np.testing.assert_allclose(zd.grad.numpy(), g_d, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(zf.grad.numpy(), g_f, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("reduction", ["sum", "none"])
def test_gradient_of_other_reductions(reduction):
    z, y = make_batch([0, 0, 1, 1, 1, 2], dim=4, seed=25, spread=0.7)
    weights = np.linspace(0.5, 2.0, len(y))
    zz = z.clone().requires_grad_()
    out = varcon_loss(zz, y, 0.2, 0.05, reduction=reduction)
    if reduction == "none":
        (out * torch.from_numpy(weights)).sum().backward()
    else:
        out.backward()
    frozen = class_centroids(z, y)

    def f(x):
        per = varcon_reference(x, y, 0.2, 0.05, centroids=frozen).loss
        return (per * weights).sum() if reduction == "none" else per.sum()

    np.testing.assert_allclose(
        zz.grad.numpy(), central_difference(f, z.numpy()), rtol=1e-6, atol=1e-8
    )


# ---------------------------------------------------------------------------------------
# Log-space evaluation and low precision


@pytest.mark.parametrize(("tau1", "eps"), [(0.05, 0.025), (0.05, 0.045), (0.02, 0.0199)])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_extreme_inverse_tau2_is_finite_and_exact(tau1, eps, dtype):
    """1/tau2 from 1/(tau1+eps) up to 1/(tau1-eps) = 10^4: e^(1/tau2) overflows any dtype."""
    for kind in ("confident", "unconfident"):
        z, y = _batch(kind, dtype)
        ref = varcon_reference(z, y, tau1, eps)
        assert np.isfinite(ref.loss).all()
        zz = z.clone().requires_grad_()
        per, stats = varcon_loss(zz, y, tau1, eps, reduction="none", return_stats=True)
        assert torch.isfinite(per).all() and torch.isfinite(stats.kl).all()
        per.sum().backward()
        assert torch.isfinite(zz.grad).all()
        np.testing.assert_allclose(
            per.detach().numpy(), ref.loss, **_tolerances(dtype, tau1, ref.loss.mean())
        )
        assert (stats.tau2 >= tau1 - eps - 1e-7).all() and (stats.tau2 <= tau1 + eps + 1e-7).all()


@pytest.mark.parametrize("low", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
@pytest.mark.parametrize("kind", ["many_classes", "confident", "unconfident"])
def test_half_precision_inputs(low, kind):
    z, y = _batch(kind, torch.float32)
    z_low = z.to(low)
    z_rounded = z_low.float()  # the same rounded values, in float32
    for nc in (None, int(y.max()) + 2):
        loss_fn = VarConLoss(0.05, 0.025, num_classes=nc, reduction="none")
        zl = z_low.clone().requires_grad_()
        got = loss_fn(zl, y)
        assert got.dtype == torch.float32
        assert torch.isfinite(got).all()
        got.sum().backward()
        assert zl.grad.dtype == low and torch.isfinite(zl.grad).all()
        want = loss_fn(z_rounded, y)
        np.testing.assert_allclose(got.detach().numpy(), want.numpy(), rtol=1e-6, atol=1e-6)
        ref = varcon_reference(z_rounded, y, 0.05, 0.025).loss
        np.testing.assert_allclose(
            got.detach().numpy(), ref, **_tolerances(torch.float32, 0.05, ref.mean())
        )


def test_autocast_bfloat16_features_give_float32_loss():
    z, y = _batch("many_classes", torch.float32)
    layer = torch.nn.Linear(z.shape[1], 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        feats = F.normalize(layer(z), dim=1)
        loss = VarConLoss(0.05, 0.025)(feats, y)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    ref = varcon_reference(feats.detach().float(), y, 0.05, 0.025).loss.mean()
    np.testing.assert_allclose(loss.item(), ref, rtol=1e-4)
    loss.backward()
    assert torch.isfinite(layer.weight.grad).all()


# ---------------------------------------------------------------------------------------
# Options


@pytest.mark.parametrize("detach", [True, False])
def test_compile_fullgraph_with_num_classes(detach):
    z, y = _batch("singletons", torch.float32)
    loss_fn = VarConLoss(0.1, 0.02, num_classes=8, detach_centroids=detach)
    compiled = torch.compile(loss_fn, fullgraph=True, backend="eager")
    zc, ze = z.clone().requires_grad_(), z.clone().requires_grad_()
    got = compiled(zc, y)
    want = loss_fn(ze, y)
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-7)
    got.backward()
    want.backward()
    torch.testing.assert_close(zc.grad, ze.grad, rtol=1e-5, atol=1e-7)
    ref = varcon_reference(z, y, 0.1, 0.02).loss.mean()
    np.testing.assert_allclose(got.item(), ref, rtol=1e-4)


def test_compile_fullgraph_across_batch_sizes():
    """Recompiling for other batch sizes (dynamic shapes) stays graph-break free."""
    loss_fn = VarConLoss(0.1, 0.02, num_classes=9)
    compiled = torch.compile(loss_fn, fullgraph=True, backend="eager")
    for labels in ([0, 1, 1, 2, 3, 3, 3, 0], [0, 1, 1, 2, 3, 3, 3, 0, 5, 5, 5], [8] * 4 + [0] * 9):
        z, y = make_batch(labels, seed=len(labels), dtype=torch.float32)
        ref = varcon_reference(z, y, 0.1, 0.02).loss.mean()
        np.testing.assert_allclose(compiled(z, y).item(), ref, rtol=1e-4)


def test_compile_fullgraph_functional_with_stats():
    z, y = _batch("two_classes", torch.float32)

    def f(z, y):
        return varcon_loss(z, y, 0.1, 0.02, num_classes=3, reduction="none", return_stats=True)

    compiled = torch.compile(f, fullgraph=True, backend="eager")
    got, got_stats = compiled(z, y)
    want, want_stats = f(z, y)
    torch.testing.assert_close(got, want)
    for name in ("kl", "nll", "tau2", "confidence"):
        torch.testing.assert_close(getattr(got_stats, name), getattr(want_stats, name))


@pytest.mark.parametrize("requires_grad", [False, True])
def test_dynamo_sees_no_graph_break_only_with_num_classes(requires_grad):
    """With num_classes dynamo captures the whole loss in one graph (no .item(), no
    torch.unique, no data-dependent shapes); without it, it reports those breaks (a
    sanity check that the analysis detects them)."""
    import torch._dynamo as dynamo

    z, y = _batch("two_classes", torch.float32)
    z = z.clone().requires_grad_(requires_grad)
    dynamo.reset()
    report = dynamo.explain(VarConLoss(0.1, 0.02, num_classes=3))(z, y)
    assert report.graph_break_count == 0 and report.graph_count == 1
    dynamo.reset()
    report = dynamo.explain(VarConLoss(0.1, 0.02))(z, y)
    assert report.graph_break_count >= 1
    reasons = " ".join(str(r.reason) for r in report.break_reasons)
    assert "unique" in reasons or "item()" in reasons


@pytest.mark.parametrize("with_num_classes", [False, True])
def test_reductions_are_consistent(with_num_classes):
    z, y = _batch("many_classes")
    nc = 40 if with_num_classes else None
    none = VarConLoss(num_classes=nc, reduction="none")(z, y)
    mean = VarConLoss(num_classes=nc, reduction="mean")(z, y)
    total = VarConLoss(num_classes=nc, reduction="sum")(z, y)
    assert none.shape == (len(y),) and mean.shape == () and total.shape == ()
    torch.testing.assert_close(mean, none.mean())
    torch.testing.assert_close(total, none.sum())


def test_return_stats():
    z, y = _batch("singletons")
    z = z.clone().requires_grad_()
    out = VarConLoss(0.1, 0.02, num_classes=10)(z, y, return_stats=True)
    assert isinstance(out, tuple) and len(out) == 2
    loss, stats = out
    assert isinstance(stats, VarConStats)
    assert loss.requires_grad and loss.shape == ()
    for name in ("kl", "nll", "tau2", "confidence"):
        t = getattr(stats, name)
        assert t.shape == (len(y),) and not t.requires_grad and t.grad_fn is None
    assert not stats.classes_in_batch.requires_grad
    assert int(stats.classes_in_batch) == 5  # present classes, not num_classes
    torch.testing.assert_close(loss, (stats.kl + stats.nll).mean())
    assert set(stats.as_dict()) == {"kl", "nll", "tau2", "confidence", "classes_in_batch"}
    # without return_stats: a bare tensor
    assert isinstance(VarConLoss()(z, y), torch.Tensor)
