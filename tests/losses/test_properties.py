"""Property-based tests (hypothesis): invariances and bounds of VarCon and SupCon."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from reference import make_batch, varcon_reference

from varcon.losses import supcon_loss, varcon_loss

SETTINGS = settings(max_examples=50, deadline=None, derandomize=True)

tau1_st = st.floats(0.05, 1.0)
eps_fraction_st = st.floats(0.0, 0.5)
seed_st = st.integers(0, 2**16)
spread_st = st.sampled_from([0.05, 0.5, 2.0])


@st.composite
def batches(draw, min_size=2):
    labels = draw(st.lists(st.integers(0, 5), min_size=min_size, max_size=14))
    z, y = make_batch(labels, dim=6, seed=draw(seed_st), spread=draw(spread_st))
    return z, y


@st.composite
def batch_and_permutation(draw):
    z, y = draw(batches())
    perm = draw(st.permutations(range(len(y))))
    return z, y, torch.tensor(perm)


@SETTINGS
@given(batch_and_permutation(), tau1_st, eps_fraction_st, st.booleans())
def test_varcon_permutation_invariance(data, tau1, eps_fraction, with_num_classes):
    z, y, perm = data
    eps = eps_fraction * tau1
    nc = 6 if with_num_classes else None
    per = varcon_loss(z, y, tau1, eps, num_classes=nc, reduction="none")
    per_p = varcon_loss(z[perm], y[perm], tau1, eps, num_classes=nc, reduction="none")
    torch.testing.assert_close(per_p, per[perm], rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(
        varcon_loss(z[perm], y[perm], tau1, eps, num_classes=nc),
        varcon_loss(z, y, tau1, eps, num_classes=nc),
        rtol=1e-9,
        atol=1e-12,
    )


@SETTINGS
@given(
    batches(),
    st.lists(st.integers(0, 49), min_size=6, max_size=6, unique=True),
    tau1_st,
    eps_fraction_st,
)
def test_varcon_relabelling_invariance(batch, new_ids, tau1, eps_fraction):
    z, y = batch
    eps = eps_fraction * tau1
    mapping = torch.tensor(new_ids)
    y_new = mapping[y]  # injective relabelling, arbitrary order
    base = varcon_loss(z, y, tau1, eps, reduction="none")
    for y2, nc in ((y_new, None), (y_new, 50), (y, 6)):
        got = varcon_loss(z, y2, tau1, eps, num_classes=nc, reduction="none")
        torch.testing.assert_close(got, base, rtol=1e-9, atol=1e-12)


@SETTINGS
@given(
    st.integers(1, 12),
    st.integers(0, 9),
    seed_st,
    tau1_st,
    eps_fraction_st,
    st.booleans(),
    st.booleans(),
)
def test_varcon_single_class_is_exactly_zero(n, label, seed, tau1, eps_fraction, detach, with_nc):
    z, y = make_batch([label] * n, dim=5, seed=seed, spread=1.0)
    z = z.requires_grad_()
    nc = 10 if with_nc else None
    per, stats = varcon_loss(
        z,
        y,
        tau1,
        eps_fraction * tau1,
        num_classes=nc,
        detach_centroids=detach,
        reduction="none",
        return_stats=True,
    )
    assert torch.all(per == 0), per
    assert torch.all(stats.confidence == 1)
    per.sum().backward()
    assert torch.all(z.grad == 0), z.grad


@SETTINGS
@given(batches(), tau1_st, eps_fraction_st, st.booleans())
def test_varcon_loss_bounds_and_tau2_range(batch, tau1, eps_fraction, with_num_classes):
    z, y = batch
    eps = eps_fraction * tau1
    nc = 6 if with_num_classes else None
    per, stats = varcon_loss(z, y, tau1, eps, num_classes=nc, reduction="none", return_stats=True)
    # KL >= 0, so the loss is at least -log p(r|z) = -log confidence (up to rounding)
    assert torch.all(stats.kl >= -1e-12)
    assert torch.all(per >= -torch.log(stats.confidence) - 1e-10)
    ref = varcon_reference(z, y, tau1, eps)
    np.testing.assert_array_less(-1e-12, ref.kl)  # the reference agrees on the bound
    assert torch.all(stats.tau2 >= tau1 - eps - 1e-12)
    assert torch.all(stats.tau2 <= tau1 + eps + 1e-12)
    assert torch.all((stats.confidence >= 0) & (stats.confidence <= 1))


@SETTINGS
@given(batch_and_permutation(), st.floats(0.05, 1.0), st.booleans())
def test_supcon_permutation_invariance(data, tau, with_num_classes):
    z, y, perm = data
    nc = 6 if with_num_classes else None
    per = supcon_loss(z, y, tau, num_classes=nc, reduction="none")
    per_p = supcon_loss(z[perm], y[perm], tau, num_classes=nc, reduction="none")
    torch.testing.assert_close(per_p, per[perm], rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(
        supcon_loss(z[perm], y[perm], tau, num_classes=nc),
        supcon_loss(z, y, tau, num_classes=nc),
        rtol=1e-9,
        atol=1e-12,
    )


@SETTINGS
@given(
    batches(),
    st.lists(st.integers(0, 49), min_size=6, max_size=6, unique=True),
    st.floats(0.05, 1.0),
)
def test_supcon_relabelling_invariance(batch, new_ids, tau):
    z, y = batch
    y_new = torch.tensor(new_ids)[y]
    base = supcon_loss(z, y, tau, reduction="none")
    torch.testing.assert_close(supcon_loss(z, y_new, tau, reduction="none"), base)
    torch.testing.assert_close(supcon_loss(z, y_new, tau, num_classes=50, reduction="none"), base)
