"""Self-supervised VarCon: latent pseudo-classes over running prototypes, plus VarCon with
instance labels. The derivation is in ``docs/self_supervised.md``."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..distributed import check_gradient_scale, gather_batch
from ..functional import (
    check_hyperparameters,
    check_inputs,
    check_momentum,
    check_reduction,
    ema_prototype_update_,
    varcon_loss,
)
from .diagnostics import marginal_entropy
from .ntxent import check_views, instance_labels
from .sinkhorn import check_sinkhorn, sinkhorn_log

__all__ = ["PseudoClassTerms", "VarConSSLLoss", "VarConSSLStats", "check_num_prototypes",
           "check_queue_length", "pseudo_class_loss", "varcon_ssl_loss"]


@dataclass(frozen=True)
class VarConSSLStats:
    """Diagnostics of one :func:`varcon_ssl_loss` evaluation (detached).

    Per row ``[N]``: ``kl``, ``nll`` (expected over the target pseudo-class),
    ``tau2`` = (tau1 - eps) + 2 eps E_r[p(r|z)], ``confidence`` = E_r[p(r|z)] (Eq. 13 with
    the target r in expectation); ``instance_kl``, ``instance_nll``, ``instance_tau2``: the
    instance term's; ``assignment``: the row's own balanced pseudo-class (argmax of its
    Sinkhorn code, or its label), which moves the prototypes; ``prediction``: argmax_k
    p(k|z). 0-d: ``marginal_entropy`` of the batch-mean posterior (nats, at most log K).
    """

    kl: Tensor
    nll: Tensor
    tau2: Tensor
    confidence: Tensor
    instance_kl: Tensor
    instance_nll: Tensor
    instance_tau2: Tensor
    assignment: Tensor
    prediction: Tensor
    marginal_entropy: Tensor


def check_num_prototypes(num_prototypes: object, rows: int | None = None,
                         queued: int = 0) -> int:
    """K as an int >= 2, and at most the ``rows`` a step assigns plus the ``queued`` earlier
    embeddings it balances them with (``ValueError`` naming the fix otherwise)."""
    if (isinstance(num_prototypes, bool) or not isinstance(num_prototypes, int)
            or num_prototypes < 2):
        raise ValueError(f"num_prototypes must be an int >= 2 (pseudo-classes), got "
                         f"{num_prototypes!r}")
    if rows is not None and num_prototypes > rows + queued:
        held = f"{rows} embeddings a step assigns (global batch x views)"
        if queued:
            held = f"{rows + queued} embeddings a step balances ({rows} of the global batch " \
                   f"x views and {queued} queued)"
        raise ValueError(
            f"num_prototypes={num_prototypes} exceeds the {held}: the balanced assignment "
            f"would give each pseudo-class less than one embedding and at least "
            f"{num_prototypes - rows - queued} none at all. Use at most {rows + queued} "
            f"prototypes, a larger batch, or a queue of earlier embeddings (queue_length >= "
            f"{num_prototypes - rows})"
        )
    return num_prototypes


class PseudoClassTerms(NamedTuple):
    """Per row ``[N]``: ``loss`` = ``kl`` + ``nll``, ``tau2``, ``confidence``; and
    ``log_p`` ``[N, K]``, the log posterior over the prototypes."""

    loss: Tensor
    kl: Tensor
    nll: Tensor
    tau2: Tensor
    confidence: Tensor
    log_p: Tensor


def pseudo_class_loss(features: Tensor, prototypes: Tensor, target: Tensor,
                      temperature: float = 0.1, epsilon: float = 0.02) -> PseudoClassTerms:
    r"""VarCon's per-sample loss (Eq. 7) in expectation over a target distribution of the
    latent class, with prototypes as the class vectors.

    With w_k the K prototypes (constants), pi_i a distribution over them (``target``
    [N, K]) and, for each candidate class r:

        p(k|z)    = softmax_k(z . w_k / tau1)                                  (Eq. 8)
        tau2_r    = (tau1 - eps) + 2 eps p(r|z)                                (Eq. 13)
        q_r(k|z)  = [1 + (e^{1/tau2_r} - 1) 1{k = r}] / (e^{1/tau2_r} + K - 1)  (Eqs. 10-12)
        loss_i    = sum_r pi_ir [ KL(q_r || p) - log p(r|z) ]                  (Eq. 7)

    With a one-hot pi it is VarCon's loss with label r over these K class vectors; its
    ``-sum_r pi_r log p(r|z)`` part is SwAV's swapped prediction. Closed form per r (q_r
    takes two values): with S = sum_k log p(k|z), a = q_r(r), b = q_r(k != r),

        KL(q_r || p) = a (log a - log p_r) + (K-1) b log b - b (S - log p_r)

    so the cost is O(N K D) time and O(N K) memory. Gradients flow through p (and through
    tau2, as in the paper's code), not through the prototypes or pi. ``tau2`` and
    ``confidence`` are reported in expectation: sum_r pi_r tau2_r and sum_r pi_r p(r|z).
    Computed in float32 (float64 for float64 features).
    """
    num_k = prototypes.shape[0]
    dtype = torch.float64 if features.dtype == torch.float64 else torch.float32
    with torch.autocast(device_type=features.device.type, enabled=False):
        z = features.to(dtype)
        # a copy: the caller may move its prototypes in place before the backward pass
        w = prototypes.detach().to(dtype, copy=True)
        log_p = F.log_softmax(z @ w.t() / temperature, dim=1)  # [N, K]
        p = log_p.exp()
        tau2 = (temperature - epsilon) + 2.0 * epsilon * p  # tau2_r for each candidate r
        inv_tau2 = tau2.reciprocal()
        log_others = math.log(num_k - 1)
        log_q_true = -F.softplus(log_others - inv_tau2)  # log a
        log_q_other = log_q_true - inv_tau2  # log b
        q_other = log_q_other.exp()
        others_mass = torch.exp(log_others + log_q_other)  # (K - 1) b
        log_p_sum = log_p.sum(dim=1, keepdim=True)  # S
        kl = (log_q_true.exp() * (log_q_true - log_p) + others_mass * log_q_other
              - q_other * (log_p_sum - log_p))  # [N, K]: KL(q_r || p) for each r
        pi = target.to(dtype)
        kl_i = (pi * kl).sum(dim=1)
        nll_i = -(pi * log_p).sum(dim=1)
        return PseudoClassTerms(kl_i + nll_i, kl_i, nll_i, (pi * tau2).sum(dim=1),
                                (pi * p).sum(dim=1), log_p)


@torch.no_grad()
def swapped_targets(features: Tensor, prototypes: Tensor, views: int,
                    labels: Tensor | None = None, *, sinkhorn_epsilon: float = 0.05,
                    sinkhorn_iterations: int = 3, queue: Tensor | None = None,
                    queue_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
    r"""The variational distribution of each row's pseudo-class, and its own assignment.

    Balanced codes c_i = Sinkhorn(z_i . w / eps_s) over all N rows of the batch
    (:func:`sinkhorn_log`), then each row's target is the mean code of the *other* views of
    its image (SwAV's swapped prediction):

        pi_i = 1/(V-1) sum_{j in views(i), j != i} c_j

    With a ``queue`` [Q, D] of earlier embeddings (SwAV's queue), Sinkhorn balances the
    Q + N rows together and the batch keeps its N codes: each prototype gets an equal share
    of the Q + N rows, so K may exceed N (up to Q + N). ``queue_mask`` [Q] bool marks the
    queue rows that hold an embedding (a queue still filling); the others are left out.

    Rows with a label (``labels >= 0``) take the one-hot of their class instead: the class is
    then the latent variable, observed. Returns ``pi`` [N, K] and ``assignment`` [N] long:
    argmax of the row's own code (or its label), which moves the prototypes.
    """
    n, k = features.shape[0], prototypes.shape[0]
    scores = features.detach().float() @ prototypes.detach().float().t()
    if queue is not None and len(queue):
        queued = queue.detach().float() @ prototypes.detach().float().t()
        mask = None if queue_mask is None else torch.cat(
            [queue_mask, torch.ones(n, dtype=torch.bool, device=queue_mask.device)])
        log_codes = sinkhorn_log(torch.cat([queued, scores]) / sinkhorn_epsilon,
                                 sinkhorn_iterations, row_mask=mask)[len(queue):]
    else:
        log_codes = sinkhorn_log(scores / sinkhorn_epsilon, sinkhorn_iterations)
    codes = log_codes.exp().view(n // views, views, k)
    target = ((codes.sum(dim=1, keepdim=True) - codes) / (views - 1)).reshape(n, k)
    assignment = log_codes.argmax(dim=1)
    if labels is not None:
        labeled = labels >= 0
        onehot = F.one_hot(labels.clamp_min(0).long(), k).to(target.dtype)
        target = torch.where(labeled[:, None], onehot, target)
        assignment = torch.where(labeled, labels.long(), assignment)
    return target, assignment


def varcon_ssl_loss(
    features: Tensor,
    prototypes: Tensor,
    views: int = 2,
    labels: Tensor | None = None,
    temperature: float = 0.1,
    epsilon: float = 0.02,
    *,
    instance_weight: float = 1.0,
    prototype_weight: float = 1.0,
    sinkhorn_epsilon: float = 0.05,
    sinkhorn_iterations: int = 3,
    queue: Tensor | None = None,
    queue_mask: Tensor | None = None,
    reduction: str = "mean",
    return_stats: bool = False,
) -> Tensor | tuple[Tensor, VarConSSLStats]:
    r"""Self-supervised VarCon: per row i (views of one image on adjacent rows),

        loss_i = lambda_inst L_VarCon(z_i; instance labels)
                 + lambda_proto sum_r pi_ir [ KL(q_r || p) - log p(r|z_i) ]

    * the instance term is :func:`~varcon.losses.functional.varcon_loss` with the labels
      ``arange(N) // V``: each image is a class, its centroid the mean of its views;
    * the pseudo-class term is :func:`pseudo_class_loss` over the K ``prototypes`` [K, D]
      (unit norm, constants), with ``pi`` from :func:`swapped_targets` (balanced codes of
      the other views; the class itself for rows with a label >= 0).

    A weight of 0 leaves its term out of the loss (its statistics are still computed,
    without autograd).

    Args:
        features: [N, D], N = B * V, L2-normalised.
        prototypes: [K, D] unit norm, 2 <= K <= N.
        views: V >= 2.
        labels: optional [N] in {-1} | [0, K): -1 unlabeled, else the class (semi-supervised).
        temperature, epsilon: tau1, eps of both terms.
        instance_weight, prototype_weight: lambda_inst, lambda_proto >= 0, not both 0.
        sinkhorn_epsilon, sinkhorn_iterations: the codes' regularisation and iterations.
        queue, queue_mask: optional [Q, D] earlier embeddings (no gradient) that the codes
            are balanced with, and [Q] bool, the rows that hold one (:func:`swapped_targets`);
            with a queue, K <= N + Q.
        reduction, return_stats: as :func:`~varcon.losses.functional.varcon_loss`.
    """
    check_hyperparameters(temperature, epsilon)
    check_reduction(reduction)
    check_views(views)
    check_sinkhorn(sinkhorn_epsilon, sinkhorn_iterations)
    check_weights(instance_weight, prototype_weight)
    if prototypes.dim() != 2 or not prototypes.is_floating_point():
        raise ValueError(f"prototypes must be a floating-point [K, D] matrix, got "
                         f"{tuple(prototypes.shape)} {prototypes.dtype}")
    n = features.shape[0] if features.dim() == 2 else 0
    rows = instance_labels(n, views, features.device)  # also checks V divides N
    check_inputs(features, rows)
    if queue is not None and (queue.dim() != 2 or queue.shape[1] != prototypes.shape[1]):
        raise ValueError(f"queue must be a [Q, D] matrix with the prototypes' D = "
                         f"{prototypes.shape[1]}, got {tuple(queue.shape)}")
    check_num_prototypes(prototypes.shape[0], n, 0 if queue is None else len(queue))
    if prototypes.shape[1] != features.shape[1]:
        raise ValueError(f"prototypes have dimension {prototypes.shape[1]} but the features "
                         f"{features.shape[1]}")
    if labels is not None:
        check_inputs(features, labels)
        if labels.device.type == "cpu" and labels.numel() and int(labels.max()) >= len(
                prototypes):
            raise ValueError(
                f"labels reach {int(labels.max())} but there are only {len(prototypes)} "
                "prototypes: labelled classes take prototypes 0..C-1, so use at least as many "
                "prototypes as classes")

    target, assignment = swapped_targets(
        features, prototypes, views, labels, sinkhorn_epsilon=sinkhorn_epsilon,
        sinkhorn_iterations=sinkhorn_iterations, queue=queue, queue_mask=queue_mask)
    with torch.set_grad_enabled(torch.is_grad_enabled() and prototype_weight > 0):
        pseudo = pseudo_class_loss(features, prototypes, target, temperature, epsilon)
    with torch.set_grad_enabled(torch.is_grad_enabled() and instance_weight > 0):
        inst_loss, inst = varcon_loss(features, rows, temperature, epsilon,
                                      num_classes=n // views, reduction="none",
                                      return_stats=True)
    per_row = pseudo.loss.new_zeros(n)
    if instance_weight > 0:
        per_row = per_row + instance_weight * inst_loss.to(per_row.dtype)
    if prototype_weight > 0:
        per_row = per_row + prototype_weight * pseudo.loss
    loss = per_row.mean() if reduction == "mean" else (
        per_row.sum() if reduction == "sum" else per_row)
    if not return_stats:
        return loss
    stats = VarConSSLStats(
        kl=pseudo.kl.detach(), nll=pseudo.nll.detach(), tau2=pseudo.tau2.detach(),
        confidence=pseudo.confidence.detach(), instance_kl=inst.kl, instance_nll=inst.nll,
        instance_tau2=inst.tau2, assignment=assignment,
        prediction=pseudo.log_p.detach().argmax(dim=1),
        marginal_entropy=marginal_entropy(pseudo.log_p))
    return loss, stats


def check_queue_length(queue_length: object) -> int:
    """Q as an int >= 0 (``ValueError`` otherwise)."""
    if isinstance(queue_length, bool) or not isinstance(queue_length, int) or queue_length < 0:
        raise ValueError(f"queue_length must be an int >= 0 (earlier embeddings kept for the "
                         f"balanced assignment; 0 = no queue), got {queue_length!r}")
    return queue_length


def check_weights(instance_weight: object, prototype_weight: object) -> None:
    """``ValueError`` unless both weights are finite numbers >= 0, not both 0."""
    for name, w in (("instance_weight", instance_weight), ("prototype_weight", prototype_weight)):
        if (isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w)
                or w < 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {w!r}")
    if instance_weight == 0 and prototype_weight == 0:
        raise ValueError("instance_weight and prototype_weight are both 0: nothing to train; "
                         "set one of them > 0")


class VarConSSLLoss(nn.Module):
    r"""Self-supervised VarCon: VarCon with latent pseudo-classes (see
    :func:`varcon_ssl_loss` for the loss, ``docs/self_supervised.md`` for the derivation).

    The module owns K running prototypes (buffer ``prototypes`` [K, D], unit norm, drawn
    from a generator seeded by ``seed`` so every rank starts alike) and, after each loss in
    training mode, moves each prototype towards the mean of the rows assigned to it
    (their own balanced code, or their label):

        mu_k <- normalize(m mu_k + (1 - m) normalize(mean_{i : a_i = k} z_i))

    Dead prototypes: ``last_won`` [K] holds the step at which each prototype last was some
    row's most probable pseudo-class (argmax_k p(k|z)); one that has not won for
    ``dead_after`` steps counts as dead (``dead_prototypes`` in the stats). All buffers are
    in the ``state_dict`` (checkpointed, restored on resume) and identical on every rank:
    under ``torch.distributed`` the loss, the codes and the updates use the gathered global
    batch.

    Args:
        num_prototypes: K >= 2 pseudo-classes (at most the global batch x views, plus
            ``queue_length``).
        embedding_dim: D.
        views: V >= 2 views per image on adjacent rows.
        temperature, epsilon: tau1, eps (defaults 0.1, 0.02, VarCon's).
        instance_weight, prototype_weight: weights of the two terms (defaults 1, 1).
        momentum: m in [0, 1) of the prototype update (default 0.9).
        sinkhorn_epsilon, sinkhorn_iterations: defaults 0.05, 3 (SwAV's).
        dead_after: steps without a win before a prototype counts as dead (default 100).
        seed: the prototypes' initial draw.
        queue_length: Q >= 0 earlier embeddings (of the global batch, newest first) that the
            codes are balanced with, as SwAV's queue: then K may reach the global batch x
            views + Q. Buffers ``queue`` [Q, D] and ``queue_filled`` (0-d) when Q > 0.
        gather_distributed, gradient_scale, equal_shards: as :class:`~varcon.losses.VarConLoss`.

    Shapes:
        features [B * V, D], labels optional [B * V] (-1 = unlabeled) -> loss 0-d; with
        ``return_stats`` also a dict of 0-d and [N] tensors (see :meth:`forward`).
    """

    prototypes: Tensor
    last_won: Tensor
    steps: Tensor
    queue: Tensor
    queue_filled: Tensor

    def __init__(self, num_prototypes: int = 100, embedding_dim: int = 128, views: int = 2,
                 temperature: float = 0.1, epsilon: float = 0.02, *,
                 instance_weight: float = 1.0, prototype_weight: float = 1.0,
                 momentum: float = 0.9, sinkhorn_epsilon: float = 0.05,
                 sinkhorn_iterations: int = 3, dead_after: int = 100, seed: int = 0,
                 queue_length: int = 0, gather_distributed: bool = True,
                 gradient_scale: str = "exact", equal_shards: bool = False) -> None:
        super().__init__()
        check_num_prototypes(num_prototypes)
        check_hyperparameters(temperature, epsilon)
        check_weights(instance_weight, prototype_weight)
        check_momentum(momentum)
        check_sinkhorn(sinkhorn_epsilon, sinkhorn_iterations)
        check_gradient_scale(gradient_scale)
        if isinstance(embedding_dim, bool) or not isinstance(embedding_dim, int) or \
                embedding_dim < 1:
            raise ValueError(f"embedding_dim must be a positive int, got {embedding_dim!r}")
        if isinstance(dead_after, bool) or not isinstance(dead_after, int) or dead_after < 1:
            raise ValueError(f"dead_after must be an int >= 1 (steps), got {dead_after!r}")
        check_queue_length(queue_length)
        self.num_prototypes = num_prototypes
        self.views = check_views(views)
        self.temperature = float(temperature)
        self.epsilon = float(epsilon)
        self.instance_weight = float(instance_weight)
        self.prototype_weight = float(prototype_weight)
        self.momentum = float(momentum)
        self.sinkhorn_epsilon = float(sinkhorn_epsilon)
        self.sinkhorn_iterations = int(sinkhorn_iterations)
        self.dead_after = dead_after
        self.gather_distributed = gather_distributed
        self.gradient_scale = gradient_scale
        self.equal_shards = bool(equal_shards)
        generator = torch.Generator().manual_seed(seed)
        start = F.normalize(torch.randn(num_prototypes, embedding_dim, generator=generator), dim=1)
        self.register_buffer("prototypes", start)
        self.register_buffer("last_won", torch.zeros(num_prototypes, dtype=torch.long))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))
        self.queue_length = queue_length
        if queue_length:  # (without a queue the state dict is what it was before queues)
            self.register_buffer("queue", torch.zeros(queue_length, embedding_dim))
            self.register_buffer("queue_filled", torch.zeros((), dtype=torch.long))

    def forward(self, features: Tensor, labels: Tensor | None = None,
                return_stats: bool = False) -> Tensor | tuple[Tensor, dict[str, Tensor]]:
        """The loss; with ``return_stats`` also ``{"stats": VarConSSLStats fields ...}``: the
        :class:`VarConSSLStats` fields plus ``dead_prototypes`` (0-d count)."""
        if self.prototypes.device != features.device:
            raise ValueError(f"the prototypes are on {self.prototypes.device} but the features "
                             f"on {features.device}; move the loss: loss_fn.to(device)")
        if labels is None:
            labels = torch.full((features.shape[0],), -1, dtype=torch.long,
                                device=features.device)
        if self.gather_distributed:
            features, labels = gather_batch(features, labels, self.gradient_scale,
                                            equal_shards=self.equal_shards)
        queue = queue_mask = None
        if self.queue_length:  # the rows filled so far (newest first), on the device
            queue = self.queue
            queue_mask = torch.arange(self.queue_length, device=queue.device) < self.queue_filled
        loss, stats = varcon_ssl_loss(
            features, self.prototypes, self.views, labels, self.temperature, self.epsilon,
            instance_weight=self.instance_weight, prototype_weight=self.prototype_weight,
            sinkhorn_epsilon=self.sinkhorn_epsilon,
            sinkhorn_iterations=self.sinkhorn_iterations, queue=queue, queue_mask=queue_mask,
            return_stats=True)
        if self.training:
            self._update(features, stats)
        if not return_stats:
            return loss
        out = dict(vars(stats))
        out["dead_prototypes"] = ((self.steps - self.last_won) >= self.dead_after).sum()
        return loss, out

    @torch.no_grad()
    def _update(self, features: Tensor, stats: VarConSSLStats) -> None:
        # After the loss, which used its own copy of the prototypes' values (detached,
        # converted): writing the buffers in place does not touch this step's gradient.
        valid = torch.ones(self.num_prototypes, dtype=torch.bool, device=features.device)
        ema_prototype_update_(self.prototypes, valid, features.detach(), stats.assignment,
                              self.momentum)
        self.steps += 1
        won = torch.zeros(self.num_prototypes, dtype=torch.bool, device=features.device)
        won[stats.prediction] = True
        self.last_won.copy_(torch.where(won, self.steps, self.last_won))
        if self.queue_length:  # this batch in front, the oldest rows out (SwAV's queue)
            rows = features.detach().to(self.queue.dtype)
            self.queue.copy_(torch.cat([rows, self.queue])[:self.queue_length])
            self.queue_filled.copy_((self.queue_filled + len(rows)).clamp_max(self.queue_length))

    def extra_repr(self) -> str:
        return (f"num_prototypes={self.num_prototypes}, views={self.views}, "
                f"temperature={self.temperature}, epsilon={self.epsilon}, "
                f"instance_weight={self.instance_weight}, "
                f"prototype_weight={self.prototype_weight}, momentum={self.momentum}, "
                f"sinkhorn_epsilon={self.sinkhorn_epsilon}, "
                f"sinkhorn_iterations={self.sinkhorn_iterations}"
                + (f", queue_length={self.queue_length}" if self.queue_length else ""))
