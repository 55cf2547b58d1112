"""VarCon with class prototypes across steps (``prototypes="ema"``).

The loss is checked against a plain float64 loop written from the equations (not from
the implementation's algebra), its gradient against central finite differences of that
loop, and the prototype update against the EMA written out per class.
"""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from reference import central_difference, make_batch

from varcon.losses import VarConLoss, ema_prototype_update_, varcon_loss, varcon_prototype_loss

TAU1, EPS = 0.1, 0.02


# ----------------------------------------------------------------- plain references


def _normalize(v: np.ndarray) -> np.ndarray:
    return v / math.sqrt(float(v @ v))


def reference_centroids(z, y, prototypes, seen):
    """{class: w_c} for the classes in the softmax: this batch's normalised mean for the
    classes present, the stored prototype for the seen classes absent from the batch."""
    z, y = np.asarray(z, dtype=np.float64), np.asarray(y)
    cols = {}
    for c in range(len(seen)):
        rows = [z[j] for j in range(len(y)) if y[j] == c]
        if rows:
            cols[c] = _normalize(np.mean(rows, axis=0))
        elif seen[c]:
            cols[c] = np.asarray(prototypes[c], dtype=np.float64)
    return cols


def reference_loss(z, y, cols, tau1=TAU1, eps=EPS) -> np.ndarray:
    """Per-sample Eq. 7 over the classes in ``cols`` (a loop over samples and classes)."""
    z = np.asarray(z, dtype=np.float64)
    classes = sorted(cols)
    big_c = len(classes)
    out = np.zeros(len(y))
    for i in range(len(y)):
        logits = [float(z[i] @ cols[c]) / tau1 for c in classes]
        top = max(logits)
        log_norm = top + math.log(sum(math.exp(v - top) for v in logits))
        log_p = {c: logits[k] - log_norm for k, c in enumerate(classes)}
        r = int(y[i])
        tau2 = (tau1 - eps) + 2 * eps * math.exp(log_p[r])
        a = 1.0 / tau2
        # q: e^a on the true class, 1 elsewhere, normalised (in log space: e^a ~ e^10)
        log_z = a + math.log1p((big_c - 1) * math.exp(-a))
        kl = 0.0
        for c in classes:
            log_q = (a if c == r else 0.0) - log_z
            kl += math.exp(log_q) * (log_q - log_p[c])
        out[i] = kl - log_p[r]
    return out


def reference_update(prototypes, seen, z, y, momentum):
    """The EMA step, class by class."""
    protos = np.array(prototypes, dtype=np.float64)
    seen = np.array(seen, dtype=bool)
    z, y = np.asarray(z, dtype=np.float64), np.asarray(y)
    for c in range(len(seen)):
        rows = [z[j] for j in range(len(y)) if y[j] == c]
        if not rows:
            continue
        w = _normalize(np.mean(rows, axis=0))
        protos[c] = _normalize(momentum * protos[c] + (1 - momentum) * w) if seen[c] else w
        seen[c] = True
    return protos, seen


def _bank(num_classes, dim, seen_classes, seed=5):
    g = torch.Generator().manual_seed(seed)
    protos = F.normalize(torch.randn(num_classes, dim, generator=g, dtype=torch.float64), dim=1)
    seen = torch.zeros(num_classes, dtype=torch.bool)
    seen[list(seen_classes)] = True
    return protos.masked_fill(~seen[:, None], 0.0), seen


def _updated(protos, seen, z, y, momentum):
    """ema_prototype_update_ on copies: (new prototypes, new seen)."""
    protos, seen = protos.clone(), seen.clone()
    ema_prototype_update_(protos, seen, z, y, momentum)
    return protos, seen


# 10 classes: batch holds 0, 2, 3, 7; prototypes seen for 0, 1, 3, 5, 9. So the softmax has
# present-and-seen (0, 3), present-only (2, 7), seen-only (1, 5, 9) and unseen (4, 6, 8).
LABELS = [0, 2, 2, 3, 7, 0, 3, 3, 2, 7, 0]
SEEN = [0, 1, 3, 5, 9]
K, D = 10, 6


# ----------------------------------------------------------------------- the loss


@pytest.mark.parametrize("eps", [0.02, 0.0])
@pytest.mark.parametrize("spread", [0.3, 2.0])
def test_loss_matches_loop_reference(eps, spread):
    z, y = make_batch(LABELS, dim=D, seed=3, spread=spread)
    protos, seen = _bank(K, D, SEEN)
    loss, stats = varcon_prototype_loss(
        z, y, protos, seen, TAU1, eps, reduction="none", return_stats=True
    )
    cols = reference_centroids(z.numpy(), y.numpy(), protos.numpy(), seen.numpy())
    assert sorted(cols) == [0, 1, 2, 3, 5, 7, 9]
    want = reference_loss(z.numpy(), y.numpy(), cols, TAU1, eps)
    np.testing.assert_allclose(loss.numpy(), want, rtol=1e-10, atol=1e-12)
    assert int(stats.classes_in_batch) == 7  # classes in the softmax, not only the batch's
    # the mean reduction and the module agree with the per-sample values
    mean = varcon_prototype_loss(z, y, protos, seen, TAU1, eps)
    np.testing.assert_allclose(float(mean), want.mean(), rtol=1e-10)


def test_seen_classes_matter_and_unseen_rows_are_ignored():
    z, y = make_batch(LABELS, dim=D, seed=3)
    protos, seen = _bank(K, D, SEEN)
    with_bank = varcon_prototype_loss(z, y, protos, seen)
    without = varcon_loss(z, y, num_classes=K)
    assert float(with_bank) > float(without) + 1e-3  # more negatives: a larger loss
    # what the rows of unseen classes hold does not matter
    junk = protos.clone()
    junk[[4, 6, 8]] = torch.randn(3, D, dtype=torch.float64)
    assert torch.equal(varcon_prototype_loss(z, y, junk, seen), with_bank)
    # nor does a stored prototype of a class present in the batch (its centroid is used)
    other = protos.clone()
    other[[0, 3]] = -other[[0, 3]]
    assert torch.equal(varcon_prototype_loss(z, y, other, seen), with_bank)


@pytest.mark.parametrize("detach", [True, False])
def test_gradient_matches_finite_differences(detach):
    labels = [0, 2, 2, 3, 0, 3]
    z, y = make_batch(labels, dim=4, seed=8, spread=0.8)
    protos, seen = _bank(K, 4, [0, 1, 5])
    zr = z.clone().requires_grad_(True)
    varcon_prototype_loss(zr, y, protos, seen, detach_centroids=detach).backward()

    fixed = reference_centroids(z.numpy(), y.numpy(), protos.numpy(), seen.numpy())

    def f(flat):
        zz = flat.reshape(z.shape)
        cols = fixed if detach else reference_centroids(zz, y.numpy(), protos.numpy(),
                                                        seen.numpy())
        return reference_loss(zz, y.numpy(), cols).mean()

    want = central_difference(f, z.numpy().ravel(), h=1e-6).reshape(z.shape)
    np.testing.assert_allclose(zr.grad.numpy(), want, rtol=1e-5, atol=1e-7)


def test_first_step_equals_batch_mode():
    # nothing seen yet: the softmax runs over the batch's classes, exactly as batch mode
    z, y = make_batch([4, 1, 1, 7, 4, 4, 9], dim=5, seed=2)
    z = z.float()
    grads = []
    for loss_fn in (VarConLoss(num_classes=12, prototypes="ema"),
                    VarConLoss(num_classes=12)):
        zr = z.clone().requires_grad_(True)
        loss, stats = loss_fn(zr, y, return_stats=True)
        loss.backward()
        grads.append((loss.detach(), zr.grad, stats.classes_in_batch))
    (l_ema, g_ema, c_ema), (l_batch, g_batch, c_batch) = grads
    assert torch.equal(l_ema, l_batch) and torch.equal(g_ema, g_batch)
    assert int(c_ema) == int(c_batch) == 4
    # and batch mode without num_classes (torch.unique path): the same to rounding
    torch.testing.assert_close(l_ema, VarConLoss()(z, y), rtol=1e-6, atol=1e-7)


def test_batch_mode_has_no_state():
    assert VarConLoss().state_dict() == {}
    assert VarConLoss(num_classes=5).state_dict() == {}


# ---------------------------------------------------------------------- the update


@pytest.mark.parametrize("momentum", [0.9, 0.5, 0.0])
def test_update_matches_reference(momentum):
    z, y = make_batch(LABELS, dim=D, seed=4)
    protos, seen = _bank(K, D, SEEN)
    new, new_seen = _updated(protos, seen, z, y, momentum)
    want, want_seen = reference_update(protos.numpy(), seen.numpy(), z.numpy(), y.numpy(),
                                       momentum)
    np.testing.assert_allclose(new.numpy(), want, rtol=1e-12, atol=1e-14)
    assert new_seen.tolist() == want_seen.tolist()
    assert sorted(torch.nonzero(new_seen).flatten().tolist()) == [0, 1, 2, 3, 5, 7, 9]
    # absent classes are untouched, bit for bit (seen ones and unseen zero rows alike)
    absent = [1, 4, 5, 6, 8, 9]
    assert torch.equal(new[absent], protos[absent])
    # present classes end on the unit sphere
    torch.testing.assert_close(new[[0, 2, 3, 7]].norm(dim=1), torch.ones(4, dtype=new.dtype))
    if momentum == 0.0:  # only the newest centroid counts
        centroids = reference_centroids(z.numpy(), y.numpy(), protos.numpy(), seen.numpy())
        np.testing.assert_allclose(new[0].numpy(), centroids[0], rtol=1e-12)


def test_non_finite_class_keeps_its_prototype():
    z, y = make_batch(LABELS, dim=D, seed=4)
    z[3] = float("nan")  # a row of class 3
    protos, seen = _bank(K, D, SEEN)
    new, new_seen = _updated(protos, seen, z, y, 0.9)
    assert torch.equal(new[3], protos[3]) and bool(new_seen[3])  # seen before: kept
    z[4] = float("inf")  # class 7, never seen: stays unseen
    new, new_seen = _updated(protos, seen, z, y, 0.9)
    assert not bool(new_seen[7]) and torch.equal(new[7], protos[7])
    assert bool(new_seen[2]) and torch.isfinite(new).all()


def test_module_runs_several_steps_like_the_reference():
    loss_fn = VarConLoss(num_classes=K, prototypes="ema", momentum=0.8).double()
    protos, seen = np.zeros((K, D)), np.zeros(K, dtype=bool)
    batches = [[0, 0, 1, 1, 2], [2, 3, 3, 4, 4], [0, 5, 5, 6, 6], [1, 7, 7, 3, 0]]
    for step, labels in enumerate(batches):
        z, y = make_batch(labels, dim=D, seed=10 + step)
        loss = loss_fn(z, y)
        cols = reference_centroids(z.numpy(), y.numpy(), protos, seen)
        np.testing.assert_allclose(float(loss), reference_loss(z.numpy(), y.numpy(), cols).mean(),
                                   rtol=1e-10)
        protos, seen = reference_update(protos, seen, z.numpy(), y.numpy(), 0.8)
        np.testing.assert_allclose(loss_fn.class_prototypes.numpy(), protos, rtol=1e-12,
                                   atol=1e-14)
        assert loss_fn.class_seen.numpy().tolist() == seen.tolist()
    assert seen[:8].all() and not seen[8:].any()


def test_update_leaves_this_steps_gradient_alone_and_eval_freezes():
    loss_fn = VarConLoss(num_classes=K, prototypes="ema")
    warm, wy = make_batch([0, 1, 1, 5, 5, 9, 0], dim=D, seed=1, dtype=torch.float32)
    loss_fn(warm, wy)  # some classes seen
    z, y = make_batch([0, 0, 2, 2, 3], dim=D, seed=6, dtype=torch.float32)
    state = {k: v.clone() for k, v in loss_fn.state_dict().items()}

    frozen = VarConLoss(num_classes=K, prototypes="ema").eval()
    frozen.load_state_dict(state)
    grads = []
    for fn in (loss_fn, frozen):
        for detach in (True, False):
            fn.detach_centroids = detach
            if fn is loss_fn:
                fn.load_state_dict(state)
            zr = z.clone().requires_grad_(True)
            fn(zr, y).backward()
            grads.append(zr.grad)
    torch.testing.assert_close(grads[0], grads[2], rtol=0, atol=0)
    torch.testing.assert_close(grads[1], grads[3], rtol=0, atol=0)
    assert not torch.equal(loss_fn.class_prototypes, state["class_prototypes"])  # it updated
    for k, v in frozen.state_dict().items():  # eval mode: nothing moved
        assert torch.equal(v, state[k]), k


# ----------------------------------------------------------------------- state


def test_state_dict_round_trip_through_a_checkpoint_file():
    loss_fn = VarConLoss(num_classes=K, prototypes="ema", momentum=0.7)
    for seed, labels in enumerate([[0, 1, 1, 2], [3, 3, 1, 4]]):
        loss_fn(*make_batch(labels, dim=D, seed=seed, dtype=torch.float32))
    buffer = io.BytesIO()
    torch.save({"loss": loss_fn.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)["loss"]
    assert set(saved) == {"class_prototypes", "class_seen"}
    assert saved["class_prototypes"].shape == (K, D)

    fresh = VarConLoss(num_classes=K, prototypes="ema", momentum=0.7)  # D not known yet
    fresh.load_state_dict(saved)
    preset = VarConLoss(num_classes=K, prototypes="ema", momentum=0.7, embedding_dim=D)
    preset.load_state_dict(saved)
    z, y = make_batch([0, 4, 4, 6], dim=D, seed=9, dtype=torch.float32)
    want = loss_fn(z, y)
    for other in (fresh, preset):
        assert torch.equal(other(z, y), want)
        for k, v in loss_fn.state_dict().items():
            assert torch.equal(other.state_dict()[k], v), k

    with pytest.raises(RuntimeError, match="size mismatch"):
        VarConLoss(num_classes=K + 1, prototypes="ema").load_state_dict(saved)


def test_low_precision_features_keep_float32_prototypes():
    loss_fn = VarConLoss(num_classes=K, prototypes="ema")
    z, y = make_batch(LABELS, dim=D, seed=4, dtype=torch.bfloat16)
    loss = loss_fn(z, y)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert loss_fn.class_prototypes.dtype == torch.float32
    torch.testing.assert_close(loss_fn.class_prototypes[[0, 2, 3, 7]].norm(dim=1),
                               torch.ones(4))


# ----------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"prototypes": "ema"}, "pass num_classes=K"),
        ({"prototypes": "bank", "num_classes": 3}, "prototypes must be one of"),
        ({"prototypes": "ema", "num_classes": 3, "momentum": 1.0}, r"momentum must be .*\[0, 1\)"),
        ({"prototypes": "ema", "num_classes": 3, "momentum": -0.1}, "momentum"),
        ({"prototypes": "ema", "num_classes": 3, "momentum": float("nan")}, "momentum"),
        ({"prototypes": "ema", "num_classes": 3, "momentum": True}, "momentum"),
        ({"momentum": 2.0}, "momentum"),
        ({"prototypes": "ema", "num_classes": 3, "embedding_dim": 0}, "embedding_dim"),
    ],
)
def test_bad_settings_are_refused_at_construction(kwargs, match):
    with pytest.raises(ValueError, match=match):
        VarConLoss(**kwargs)


def test_bad_inputs_name_the_fix():
    loss_fn = VarConLoss(num_classes=K, prototypes="ema", embedding_dim=D)
    with pytest.raises(ValueError, match="dimension 6 but the features have 4"):
        loss_fn(*make_batch([0, 1], dim=4, dtype=torch.float32))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, num_classes\)"):
        loss_fn(*make_batch([0, 12], dim=D, dtype=torch.float32))
    z, y = make_batch([0, 1], dim=D)
    protos, seen = _bank(K, D, [0])
    with pytest.raises(ValueError, match="bool mask"):
        varcon_prototype_loss(z, y, protos, seen.long())
    with pytest.raises(ValueError, match=r"\[K, D\]"):
        varcon_prototype_loss(z, y, protos[0], seen)
    with pytest.raises(ValueError, match="momentum"):
        ema_prototype_update_(protos, seen, z, y, 1.5)
    assert loss_fn.class_seen.sum() == 0  # nothing was updated by the failed calls
