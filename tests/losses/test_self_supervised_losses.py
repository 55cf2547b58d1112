"""NT-Xent against pytorch-metric-learning and lightly; self-supervised VarCon's parts against
dense references (numpy, loops over the latent class), its module state, its errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from reference import varcon_reference

from varcon.losses import NTXentLoss, SupConLoss, VarConSSLLoss, varcon_loss, varcon_ssl_loss
from varcon.losses.self_supervised import (
    effective_rank,
    instance_labels,
    marginal_entropy,
    ntxent_loss,
    pseudo_class_loss,
    sinkhorn_log,
    swapped_targets,
)


def _views(images: int, views: int = 2, dim: int = 8, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(images * views, dim, generator=g, dtype=torch.float64), dim=1)


# ----------------------------------------------------------------------------- NT-Xent


@pytest.mark.parametrize("temperature", [0.07, 0.5, 1.0])
def test_ntxent_matches_pytorch_metric_learning_and_lightly(temperature):
    pml = pytest.importorskip("pytorch_metric_learning.losses")
    lightly_loss = pytest.importorskip("lightly.loss")
    z = _views(12, seed=1).requires_grad_()
    ours = NTXentLoss(temperature)(z)
    theirs_pml = pml.NTXentLoss(temperature=temperature)(z, instance_labels(24, 2))
    # lightly takes the two views as two batches
    theirs_lightly = lightly_loss.NTXentLoss(temperature=temperature)(z[0::2], z[1::2])
    torch.testing.assert_close(ours, theirs_pml, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(ours, theirs_lightly, rtol=1e-10, atol=1e-12)
    grad_ours, = torch.autograd.grad(ours, z)
    grad_lightly, = torch.autograd.grad(theirs_lightly, z)
    # lightly normalises inside the loss, which projects its gradient onto the unit sphere's
    # tangent; ours takes the features as given (the model normalises), so compare that part
    tangent = grad_ours - (grad_ours * z).sum(1, keepdim=True) * z
    torch.testing.assert_close(tangent, grad_lightly, rtol=1e-8, atol=1e-12)


def test_ntxent_is_supcon_with_instance_labels_for_any_number_of_views():
    z = _views(7, views=3, seed=2)
    labels = torch.arange(21) // 3
    torch.testing.assert_close(ntxent_loss(z, 3, 0.2), SupConLoss(0.2)(z, labels))
    # the labels argument is ignored: each image is its own class
    torch.testing.assert_close(NTXentLoss(0.2, 3)(z, torch.zeros(21, dtype=torch.long)),
                               SupConLoss(0.2)(z, labels))


def test_ntxent_rejects_rows_that_are_not_whole_images_and_bad_views():
    with pytest.raises(ValueError, match="not whole images of 2 views"):
        ntxent_loss(_views(5)[:9], 2)
    with pytest.raises(ValueError, match="views must be an int >= 2"):
        NTXentLoss(views=1)
    with pytest.raises(ValueError, match="temperature"):
        NTXentLoss(temperature=0.0)


# ---------------------------------------------------------------------------- Sinkhorn


def _naive_sinkhorn(scores: torch.Tensor, iterations: int) -> torch.Tensor:
    q = scores.exp()
    n, k = q.shape
    for _ in range(iterations):
        q = q / q.sum(0, keepdim=True) * (n / k)
        q = q / q.sum(1, keepdim=True)
    return q


def test_sinkhorn_matches_the_textbook_iteration_and_balances():
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(40, 8, generator=g, dtype=torch.float64) * 3
    torch.testing.assert_close(sinkhorn_log(scores, 3).exp(), _naive_sinkhorn(scores, 3))
    q = sinkhorn_log(scores, 200).exp()
    torch.testing.assert_close(q.sum(1), torch.ones(40, dtype=torch.float64))
    torch.testing.assert_close(q.sum(0), torch.full((8,), 5.0, dtype=torch.float64))


def test_sinkhorn_in_log_space_survives_a_tiny_epsilon_that_overflows_exp():
    g = torch.Generator().manual_seed(1)
    scores = F.normalize(torch.randn(16, 4, generator=g), dim=1) / 1e-4  # eps_s = 1e-4
    assert not torch.isfinite(_naive_sinkhorn(scores, 3)).all()  # exp overflows float32
    log_q = sinkhorn_log(scores, 3)
    assert torch.isfinite(log_q).all()
    torch.testing.assert_close(log_q.exp().sum(1), torch.ones(16))


def test_sinkhorn_row_mask_leaves_rows_out_exactly():
    g = torch.Generator().manual_seed(2)
    scores = torch.randn(12, 5, generator=g, dtype=torch.float64) * 2
    mask = torch.tensor([False, True] * 3 + [True] * 6)
    masked = sinkhorn_log(scores, 4, row_mask=mask)
    assert torch.isneginf(masked[~mask]).all()
    # the kept rows get what Sinkhorn gives them alone (the balance counts 9 rows, not 12)
    torch.testing.assert_close(masked[mask], sinkhorn_log(scores[mask], 4))
    # an all-True mask is no mask
    torch.testing.assert_close(sinkhorn_log(scores, 4, row_mask=torch.ones(12, dtype=torch.bool)),
                               sinkhorn_log(scores, 4))
    with pytest.raises(ValueError, match="row_mask must be a bool"):
        sinkhorn_log(scores, 3, row_mask=torch.ones(11, dtype=torch.bool))


# ------------------------------------------------------------------ pseudo-class term


def _dense_expected_loss(z, w, pi, tau1, eps):
    """sum_r pi_r [KL(q_r || p) - log p_r], with q_r built as a full [N, K] matrix."""
    log_p = F.log_softmax(z @ w.t() / tau1, dim=1)
    total = torch.zeros(z.shape[0], dtype=z.dtype)
    for r in range(w.shape[0]):
        tau2 = (tau1 - eps) + 2 * eps * log_p[:, r].exp()
        log_q = torch.zeros_like(log_p)
        log_q[:, r] = 1 / tau2
        log_q = log_q - torch.logsumexp(log_q, dim=1, keepdim=True)
        kl = (log_q.exp() * (log_q - log_p)).sum(1)
        total = total + pi[:, r] * (kl - log_p[:, r])
    return total


@pytest.mark.parametrize("tau1,eps", [(0.1, 0.02), (0.5, 0.2), (0.1, 0.0)])
def test_pseudo_class_term_is_the_expected_varcon_loss(tau1, eps):
    z = _views(6, seed=3)
    w = F.normalize(torch.randn(5, 8, generator=torch.Generator().manual_seed(4),
                                dtype=torch.float64), dim=1)
    pi = torch.softmax(torch.randn(12, 5, generator=torch.Generator().manual_seed(5),
                                   dtype=torch.float64), dim=1)
    got = pseudo_class_loss(z, w, pi, tau1, eps)
    torch.testing.assert_close(got.loss, _dense_expected_loss(z, w, pi, tau1, eps))
    # one-hot pi: VarCon's own loss (Eqs. 7-13) with the prototypes as the class vectors
    labels = torch.arange(12) % 5
    ref = varcon_reference(z.numpy(), labels.numpy(), tau1, eps,
                           centroids=(np.arange(5), w.numpy()))
    onehot = pseudo_class_loss(z, w, F.one_hot(labels, 5).double(), tau1, eps)
    np.testing.assert_allclose(onehot.loss.numpy(), ref.loss, rtol=1e-10)
    np.testing.assert_allclose(onehot.tau2.numpy(), ref.tau2, rtol=1e-12)
    np.testing.assert_allclose(onehot.confidence.numpy(), ref.confidence, rtol=1e-10)


def test_pseudo_class_term_gradient_flows_through_tau2_and_matches_finite_differences():
    z = _views(3, dim=4, seed=6).requires_grad_()
    w = F.normalize(torch.randn(4, 4, generator=torch.Generator().manual_seed(7),
                                dtype=torch.float64), dim=1)
    pi = torch.softmax(torch.randn(6, 4, generator=torch.Generator().manual_seed(8),
                                   dtype=torch.float64), dim=1)
    assert torch.autograd.gradcheck(lambda x: pseudo_class_loss(x, w, pi, 0.3, 0.1).loss.sum(),
                                    (z,))
    # tau2 is not detached (as in the paper's code): a detached tau2 gives another gradient
    def detached(x):
        log_p = F.log_softmax(x @ w.t() / 0.3, dim=1)
        frozen = (0.3 - 0.1) + 0.2 * log_p.exp().detach()
        return _expected_with_tau2(log_p, frozen, pi).sum()
    g_ours, = torch.autograd.grad(pseudo_class_loss(z, w, pi, 0.3, 0.1).loss.sum(), z)
    g_detached, = torch.autograd.grad(detached(z), z)
    assert not torch.allclose(g_ours, g_detached)


def _expected_with_tau2(log_p, tau2, pi):
    k = log_p.shape[1]
    a = 1 / tau2
    log_z = torch.logaddexp(a, torch.full_like(a, math.log(k - 1)))
    log_qt, log_qo = a - log_z, -log_z
    s = log_p.sum(1, keepdim=True)
    kl = log_qt.exp() * (log_qt - log_p) + (k - 1) * log_qo.exp() * log_qo - log_qo.exp() * (
        s - log_p)
    return (pi * (kl - log_p)).sum(1)


def test_swapped_targets_take_the_other_views_codes_and_the_labels():
    z = _views(4, views=3, seed=9)
    w = F.normalize(torch.randn(3, 8, generator=torch.Generator().manual_seed(10),
                                dtype=torch.float64), dim=1)
    target, assignment = swapped_targets(z, w, 3, sinkhorn_epsilon=0.5, sinkhorn_iterations=3)
    codes = sinkhorn_log((z @ w.t()).float() / 0.5, 3).exp()  # the codes are float32
    torch.testing.assert_close(target[0], (codes[1] + codes[2]) / 2)
    torch.testing.assert_close(target[5], (codes[3] + codes[4]) / 2)
    assert torch.equal(assignment, codes.argmax(1))
    labels = torch.tensor([-1, 2, -1, -1, -1, -1, 0, -1, -1, -1, -1, -1])
    target, assignment = swapped_targets(z, w, 3, labels, sinkhorn_epsilon=0.5)
    assert target[1].tolist() == [0, 0, 1] and target[6].tolist() == [1, 0, 0]
    assert assignment[1] == 2 and assignment[6] == 0
    torch.testing.assert_close(target[0], (codes[1] + codes[2]) / 2)  # unlabelled: unchanged


def test_a_queue_is_balanced_with_the_batch_and_only_its_filled_rows_count():
    z = _views(4, seed=12)  # 8 rows
    g = torch.Generator().manual_seed(13)
    w = F.normalize(torch.randn(10, 8, generator=g, dtype=torch.float64), dim=1)  # K = 10 > 8
    queue = F.normalize(torch.randn(6, 8, generator=g, dtype=torch.float64), dim=1)
    target, assignment = swapped_targets(z, w, 2, sinkhorn_epsilon=0.5, queue=queue)
    both = torch.cat([queue, z])
    codes = sinkhorn_log((both @ w.t()).float() / 0.5, 3).exp()[6:]  # the batch's 8 codes
    torch.testing.assert_close(target[0], codes[1])
    torch.testing.assert_close(target[1], codes[0])
    assert torch.equal(assignment, codes.argmax(1))
    # rows of the queue not filled yet are left out: two filled rows are the queue
    mask = torch.tensor([True, True, False, False, False, False])
    partial, _ = swapped_targets(z, w, 2, sinkhorn_epsilon=0.5, queue=queue, queue_mask=mask)
    two, _ = swapped_targets(z, w, 2, sinkhorn_epsilon=0.5, queue=queue[:2])
    torch.testing.assert_close(partial, two)
    # K may exceed N by the queue's length, not more
    loss = varcon_ssl_loss(z, w, 2, queue=queue)
    assert torch.isfinite(loss)
    varcon_ssl_loss(z, w, 2, queue=queue[:2])  # K = N + Q
    with pytest.raises(ValueError, match=r"exceeds the 9 embeddings a step balances \(8 of "
                                         r"the global batch x views and 1 queued\)"):
        varcon_ssl_loss(z, w, 2, queue=queue[:1])
    with pytest.raises(ValueError, match=r"queue_length >= 2"):
        varcon_ssl_loss(z, w, 2)


def test_module_queue_keeps_the_newest_rows_first_and_restores_with_its_state():
    loss_fn = VarConSSLLoss(10, embedding_dim=8, queue_length=12)
    assert set(loss_fn.state_dict()) == {"prototypes", "last_won", "steps", "queue",
                                         "queue_filled"}
    assert set(VarConSSLLoss(4, 8).state_dict()) == {"prototypes", "last_won", "steps"}
    batches = [_views(4, seed=20 + i).float() for i in range(3)]  # 8 rows each
    loss_fn(batches[0])
    assert int(loss_fn.queue_filled) == 8
    assert torch.equal(loss_fn.queue[:8], batches[0]) and not loss_fn.queue[8:].any()
    copy = VarConSSLLoss(10, embedding_dim=8, queue_length=12)
    copy.load_state_dict(loss_fn.state_dict())
    for module in (loss_fn, copy):
        module(batches[1])
    assert int(loss_fn.queue_filled) == 12  # full: the oldest rows fell out
    assert torch.equal(loss_fn.queue, torch.cat([batches[1], batches[0][:4]]))
    for key, value in loss_fn.state_dict().items():  # restored, it goes on alike
        assert torch.equal(copy.state_dict()[key], value), key
    loss_fn.eval()
    loss_fn(batches[2])  # evaluation moves nothing
    assert torch.equal(loss_fn.queue[:8], batches[1])
    assert "queue_length=12" in repr(loss_fn)
    with pytest.raises(ValueError, match="queue_length must be an int >= 0"):
        VarConSSLLoss(4, 8, queue_length=-1)


def test_varcon_ssl_loss_is_the_weighted_sum_of_its_two_terms():
    z = _views(8, seed=11)
    w = F.normalize(torch.randn(6, 8, generator=torch.Generator().manual_seed(12),
                                dtype=torch.float64), dim=1)
    inst = varcon_loss(z, torch.arange(16) // 2, 0.1, 0.02)
    target, _ = swapped_targets(z, w, 2)
    proto = pseudo_class_loss(z, w, target).loss.mean()
    both = varcon_ssl_loss(z, w, 2, instance_weight=0.5, prototype_weight=2.0)
    torch.testing.assert_close(both, 0.5 * inst + 2.0 * proto)
    torch.testing.assert_close(varcon_ssl_loss(z, w, 2, prototype_weight=0), inst)
    torch.testing.assert_close(varcon_ssl_loss(z, w, 2, instance_weight=0), proto)


# ------------------------------------------------------------------------- the module


def test_module_moves_its_prototypes_in_training_only_and_keeps_them_unit_norm():
    loss_fn = VarConSSLLoss(4, embedding_dim=8).double()
    start = loss_fn.prototypes.clone()
    z = _views(6, seed=13).requires_grad_()
    loss = loss_fn(z)
    loss.backward()  # the in-place update after the loss leaves its graph intact
    assert z.grad is not None and torch.isfinite(z.grad).all()
    assert not torch.equal(loss_fn.prototypes, start)
    torch.testing.assert_close(loss_fn.prototypes.norm(dim=1), torch.ones(4, dtype=torch.float64))
    assert int(loss_fn.steps) == 1
    loss_fn.eval()
    moved = loss_fn.prototypes.clone()
    loss_fn(z.detach())
    assert torch.equal(loss_fn.prototypes, moved) and int(loss_fn.steps) == 1


def test_module_state_round_trips_and_starts_alike_for_a_seed():
    a = VarConSSLLoss(5, embedding_dim=8, seed=3).double()
    b = VarConSSLLoss(5, embedding_dim=8, seed=3).double()
    assert torch.equal(a.prototypes, b.prototypes)
    assert not torch.equal(a.prototypes, VarConSSLLoss(5, 8, seed=4).double().prototypes)
    for step in range(3):
        a(_views(5, seed=20 + step))
    assert set(a.state_dict()) == {"prototypes", "last_won", "steps"}
    b.load_state_dict(a.state_dict())
    for key, value in a.state_dict().items():
        assert torch.equal(b.state_dict()[key], value), key
    z = _views(5, seed=30)
    torch.testing.assert_close(a(z), b(z))


def test_dead_prototypes_are_those_nobody_predicted_for_dead_after_steps():
    # every row close to prototype 0: it alone wins, the other K - 1 die after 2 steps
    loss_fn = VarConSSLLoss(3, embedding_dim=4, dead_after=2, momentum=0.0).double()
    with torch.no_grad():
        loss_fn.prototypes.copy_(torch.eye(3, 4, dtype=torch.float64))
    z = F.normalize(torch.tensor([[1.0, 0.05, 0.0, 0.0]], dtype=torch.float64).repeat(6, 1)
                    + 0.01 * _views(3, dim=4, seed=1), dim=1)
    loss_fn.momentum = 0.999  # keep the prototypes where they are
    counts = []
    for _ in range(3):
        _, stats = loss_fn(z, return_stats=True)
        counts.append(int(stats["dead_prototypes"]))
    assert counts == [0, 2, 2]
    assert float(stats["marginal_entropy"]) < 0.1  # one pseudo-class takes the batch


def test_module_errors_name_the_fix():
    with pytest.raises(ValueError, match="exceeds the 8 embeddings"):
        VarConSSLLoss(10, embedding_dim=8)(_views(4))
    with pytest.raises(ValueError, match="at least as many prototypes as classes"):
        VarConSSLLoss(3, embedding_dim=8)(_views(4), torch.tensor([5] + [-1] * 7))
    with pytest.raises(ValueError, match="both 0"):
        VarConSSLLoss(3, 8, instance_weight=0, prototype_weight=0)
    with pytest.raises(ValueError, match="sinkhorn_epsilon"):
        VarConSSLLoss(3, 8, sinkhorn_epsilon=0.0)
    with pytest.raises(ValueError, match="num_prototypes must be an int >= 2"):
        VarConSSLLoss(1, 8)
    with pytest.raises(ValueError, match="not whole images"):
        VarConSSLLoss(3, 8)(_views(4)[:7])


# ------------------------------------------------------------------------ diagnostics


def test_effective_rank_is_one_for_a_collapse_and_d_for_an_even_spread():
    same = F.normalize(torch.ones(10, 6), dim=1)
    assert float(effective_rank(same)) == pytest.approx(1.0, abs=1e-4)
    spread = torch.eye(6).repeat(3, 1)
    assert float(effective_rank(spread)) == pytest.approx(6.0, rel=1e-5)


def test_marginal_entropy_spans_zero_to_log_k():
    uniform = torch.full((5, 4), math.log(0.25))
    assert float(marginal_entropy(uniform)) == pytest.approx(math.log(4))
    one = torch.log(torch.tensor([[1.0, 1e-30, 1e-30]]).repeat(5, 1))
    assert float(marginal_entropy(one)) == pytest.approx(0.0, abs=1e-6)
