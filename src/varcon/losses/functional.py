r"""Functional cores of the VarCon and SupCon losses.

Both functions take a batch that is already whole (in multi-process training the
modules in :mod:`varcon.losses.varcon` / :mod:`varcon.losses.supcon` gather it first).
Inputs of any floating dtype are computed in float32 (float64 stays float64), with
autocast switched off, so fp16/bf16 features under AMP give finite, accurate losses.

Notation (one row per sample):

    z_i   feature row i, [D]; expected L2-normalised (normalising is the model's job:
          rows are used as given)
    y_i   its integer label
    C     number of distinct classes present in the batch
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "VarConStats",
    "batch_class_centroids",
    "check_inputs",
    "check_momentum",
    "check_prototypes",
    "ema_prototype_update_",
    "supcon_loss",
    "varcon_loss",
    "varcon_prototype_loss",
]

_REDUCTIONS = ("mean", "sum", "none")


@dataclass(frozen=True)
class VarConStats:
    """Per-sample diagnostics of a VarCon loss evaluation (all detached, shape [N]).

    Attributes:
        kl: KL(q(.|z_i) || p(.|z_i)).
        nll: -log p(y_i|z_i).
        tau2: the confidence-adaptive temperature of Eq. 13.
        confidence: p(y_i|z_i), Eq. 8.
        classes_in_batch: C, the number of classes present in the batch (0-d tensor).
    """

    kl: Tensor
    nll: Tensor
    tau2: Tensor
    confidence: Tensor
    classes_in_batch: Tensor

    def as_dict(self) -> dict[str, Tensor]:
        return {
            "kl": self.kl,
            "nll": self.nll,
            "tau2": self.tau2,
            "confidence": self.confidence,
            "classes_in_batch": self.classes_in_batch,
        }


def _as_real(value: object) -> float | None:
    """``value`` as a float if it is a real number (Python, NumPy or 0-d tensor), else None."""
    if isinstance(value, bool) or (isinstance(value, Tensor) and value.numel() != 1):
        return None
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def check_hyperparameters(temperature: float, epsilon: float | None = None) -> None:
    """Raise ``ValueError`` unless ``temperature > 0`` and ``0 <= epsilon < temperature``."""
    t = _as_real(temperature)
    if t is None or not math.isfinite(t) or t <= 0:
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    e = _as_real(epsilon) if epsilon is not None else 0.0
    if epsilon is not None and (e is None or not math.isfinite(e) or not 0 <= e < t):
        raise ValueError(
            f"epsilon must satisfy 0 <= epsilon < temperature (= {temperature}), got {epsilon!r}; "
            "tau2 = (temperature - epsilon) + 2 * epsilon * p must stay positive"
        )


def check_reduction(reduction: str) -> None:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def check_inputs(
    features: Tensor, labels: Tensor, num_classes: int | None = None, *, allow_empty: bool = False
) -> None:
    """Validate shapes and dtypes; raise ``ValueError`` naming the problem and the fix.

    The label range is checked against ``num_classes`` only where that costs no
    host-device synchronisation (CPU tensors, outside ``torch.compile``); on an
    accelerator an out-of-range label fails in the indexing kernel instead.
    """
    if not isinstance(features, Tensor) or not isinstance(labels, Tensor):
        raise ValueError("features and labels must be torch.Tensor objects")
    if features.dim() != 2:
        raise ValueError(
            f"features must be 2-D [N, D], got shape {tuple(features.shape)}; "
            "flatten the views first, e.g. features.reshape(-1, D) with labels repeated per view"
        )
    if not features.is_floating_point():
        raise ValueError(f"features must be a floating-point tensor, got dtype {features.dtype}")
    if labels.dim() != 1:
        raise ValueError(f"labels must be 1-D [N], got shape {tuple(labels.shape)}")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise ValueError(
            f"labels must be integer class indices, got dtype {labels.dtype}; use labels.long()"
        )
    if features.shape[0] != labels.shape[0]:
        raise ValueError(
            f"features has {features.shape[0]} rows but labels has {labels.shape[0]} entries; "
            "with several views per image, repeat the labels once per view"
        )
    if features.shape[0] == 0 and not allow_empty:
        raise ValueError("the batch is empty: features has 0 rows")
    if num_classes is not None:
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive int or None, got {num_classes!r}")
        if labels.device.type == "cpu" and labels.numel() and not _compiling():
            lo, hi = int(labels.min()), int(labels.max())
            if lo < 0 or hi >= num_classes:
                raise ValueError(
                    f"labels must lie in [0, num_classes) = [0, {num_classes}), found values in "
                    f"[{lo}, {hi}]; pass the right num_classes, or num_classes=None"
                )


def _compiling() -> bool:
    compiler = getattr(torch, "compiler", None)
    return bool(compiler is not None and compiler.is_compiling())


def _compute_dtype(x: Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _class_index(labels: Tensor, num_classes: int | None) -> tuple[Tensor, int]:
    """Map labels to column indices ``[0, K)``.

    Without ``num_classes`` the classes present are found with ``torch.unique`` (a
    host-device sync, data-dependent K). With it, K = num_classes and the labels are
    the indices: shapes are static and nothing synchronises.
    """
    if num_classes is None:
        classes, index = torch.unique(labels, return_inverse=True)
        return index, classes.numel()
    return labels.long(), num_classes


def _reduce(per_sample: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return per_sample.mean()
    if reduction == "sum":
        return per_sample.sum()
    return per_sample


def _logits(z: Tensor, centroids: Tensor, mask_bias: Tensor | None) -> Tensor:
    """l_c = z.w_c (centroids pre-scaled by 1/tau1), [N, K]; absent classes -inf."""
    if mask_bias is None:
        return z @ centroids.T
    return torch.addmm(mask_bias, z, centroids.T)


def _other_class_diffs_(logits: Tensor, logit_true: Tensor, index: Tensor) -> Tensor:
    """d_c = l_c - l_r in place, with column r set to the most negative finite value
    (not -inf: with no other class the logsumexp stays finite and its gradient is not
    NaN)."""
    logits.sub_(logit_true[:, None])
    return logits.scatter_(1, index[:, None], torch.finfo(logits.dtype).min)


def _class_logit_terms_autograd(
    z: Tensor, centroids: Tensor, mask_bias: Tensor | None, index: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Reference path of :class:`_ClassLogitTerms` (any centroids, plain autograd)."""
    logits = _logits(z, centroids, mask_bias)
    logit_true = logits.gather(1, index[:, None]).squeeze(1)
    diffs = _other_class_diffs_(logits.clone(), logit_true, index)
    return torch.logsumexp(diffs, dim=1), logit_true, z @ centroids.sum(0)


class _ClassLogitTerms(torch.autograd.Function):
    """The three per-sample terms of the loss that involve the logits l_c = z.w_c, for
    constant centroids W [K, D], with a fused backward:

        lse_r  = logsumexp_{c != r} (l_c - l_r)      [N]
        l_r    = z.w_r                                 [N]
        sum_l  = sum_c l_c = z.(sum_c w_c)             [N]   (absent classes: w_c = 0)

    Forward keeps one [N, K] array, E = exp(d - max d), in place of the logits. With
    p_c = E_c / sum E (p_r = 0 unless r is the only class) and incoming gradients
    g_lse, g_r, g_sum:

        dL/dz = g_lse (E @ W) / sum E + (g_r - g_lse) w_r + g_sum sum_c w_c

    one [N, K] x [K, D] product. For K <= D the w_r term is folded into that product
    (a scatter into column r); for larger K it is an [N, D] gather instead, whichever
    touches fewer numbers. With r the only class, E @ W / sum E = w_r and the lse term
    vanishes, as it should.
    """

    @staticmethod
    def forward(
        ctx: Any, z: Tensor, centroids: Tensor, mask_bias: Tensor | None, index: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        logits = _logits(z, centroids, mask_bias)
        logit_true = logits.gather(1, index[:, None]).squeeze(1)
        diffs = _other_class_diffs_(logits, logit_true, index)
        row_max = diffs.amax(dim=1, keepdim=True)
        weights = diffs.sub_(row_max).exp_()  # E, reusing the logits' memory
        total = weights.sum(dim=1)
        centroid_sum = centroids.sum(0)
        ctx.save_for_backward(weights, total, centroids, centroid_sum, index)
        lse_other = row_max.squeeze(1) + total.log()
        return lse_other, logit_true, z @ centroid_sum

    @staticmethod
    def backward(
        ctx: Any, grad_lse: Tensor, grad_true: Tensor, grad_sum: Tensor
    ) -> tuple[Tensor | None, None, None, None]:
        if not ctx.needs_input_grad[0]:
            return None, None, None, None
        weights, total, centroids, centroid_sum, index = ctx.saved_tensors
        scale = grad_lse / total
        true_coef = grad_true - grad_lse
        if weights.shape[1] <= centroids.shape[1]:
            coef = weights * scale[:, None]
            coef.scatter_add_(1, index[:, None], true_coef[:, None])
            grad_z = coef @ centroids
        else:
            grad_z = (weights @ centroids).mul_(scale[:, None])
            grad_z.add_(centroids[index] * true_coef[:, None])
        return grad_z.addr_(grad_sum, centroid_sum), None, None, None


def varcon_loss(
    features: Tensor,
    labels: Tensor,
    temperature: float = 0.1,
    epsilon: float = 0.02,
    *,
    num_classes: int | None = None,
    detach_centroids: bool = True,
    reduction: str = "mean",
    return_stats: bool = False,
) -> Tensor | tuple[Tensor, VarConStats]:
    r"""VarCon loss (Wang et al., NeurIPS 2025, Eq. 7 with Eqs. 8 and 10-13).

    For each class c present in the batch (C classes) the centroid is

        w_c = normalize( mean_{j : y_j = c} z_j )                      (detached by default)

    and for each sample i with label r = y_i:

        p(c|z_i)  = softmax_c( z_i . w_c / tau1 )                        (Eq. 8)
        tau2_i    = (tau1 - eps) + 2 * eps * p(r|z_i)                    (Eq. 13)
        q(c|z_i)  = [1 + (exp(1/tau2_i) - 1) 1{c = r}] / (exp(1/tau2_i) + C - 1)   (Eqs. 10-12)
        loss_i    = KL( q(.|z_i) || p(.|z_i) ) - log p(r|z_i)            (Eq. 7)

    tau2 is not detached: as in the authors' code the gradient also flows through q.

    The computation never forms q or log p as [N, C] tensors. With ``l_c = z.w_c/tau1``,
    ``d_c = l_c - l_r``, ``a = 1/tau2`` and C classes present:

        -log p_r = softplus( logsumexp_{c != r} d_c )
        log q_r  = -softplus( log(C-1) - a ),        log q_o = log q_r - a
        KL       = q_r (log q_r - log p_r) + (C-1) q_o [log q_o - log p_r - mean_{c != r} d_c]

    where ``sum_{c != r} d_c = z.(sum_c w_c)/tau1 - C l_r`` is one [N, D] product. Every
    term keeps its relative precision for confident samples (losses down to ~1e-9 in
    float32). The [N, C] work is the logit matmul, one subtraction and one logsumexp:
    time O(N*C*D), memory O(N*C).

    Args:
        features: [N, D] embeddings (L2-normalised by the model; used as given).
        labels: [N] integer class labels.
        temperature: tau1 > 0.
        epsilon: eps in [0, tau1); eps = 0 gives a fixed tau2 = tau1.
        num_classes: if given, labels must lie in [0, num_classes); shapes become
            static and no host-device synchronisation happens (CUDA graphs,
            ``torch.compile(fullgraph=True)``). Absent classes are masked out.
        detach_centroids: treat the centroids as constants (paper, appendix C.1).
        reduction: "mean" | "sum" | "none" (per-sample [N]).
        return_stats: also return a :class:`VarConStats`.

    Returns:
        The loss (0-d, or [N] with reduction "none"), in float32 (float64 for
        float64 input), and optionally the stats.
    """
    check_hyperparameters(temperature, epsilon)
    check_reduction(reduction)
    check_inputs(features, labels, num_classes)

    dtype = _compute_dtype(features)
    with torch.autocast(device_type=features.device.type, enabled=False):
        z = features.to(dtype)
        index, num_cols = _class_index(labels, num_classes)
        n = z.shape[0]

        # Centroids: w_c = normalize(sum of z_j in class c); normalising the sum is the
        # same as normalising the mean, and empty classes stay exactly zero.
        with torch.set_grad_enabled(torch.is_grad_enabled() and not detach_centroids):
            sums = z.new_zeros(num_cols, z.shape[1]).index_add(0, index, z)
            centroids = F.normalize(sums, dim=1) / temperature  # [K, D], pre-scaled by 1/tau1
        if detach_centroids:
            centroids = centroids.detach()
        mask_bias = None
        num_present: Tensor | float
        if num_classes is None:
            # every column is a present class and C is known on the host: plain numbers
            num_present = float(num_cols)
            log_others: Tensor | float = math.log(num_cols - 1) if num_cols > 1 else -math.inf
            other_count: Tensor | float = max(num_cols - 1, 1)
        else:
            counts = torch.zeros(num_cols, dtype=dtype, device=z.device).index_add_(
                0, index, torch.ones(n, dtype=dtype, device=z.device)
            )
            present = counts > 0
            num_present = present.sum().to(dtype)  # C, as a tensor: no sync
            log_others = torch.log(num_present - 1)  # log(C-1); -inf when C = 1
            other_count = (num_present - 1).clamp_min(1)
            # Absent classes get -inf: they drop out of the softmax and the logsumexp.
            mask_bias = torch.zeros(num_cols, dtype=dtype, device=z.device).masked_fill(
                ~present, float("-inf")
            )
        return _varcon_from_centroids(
            z, index, centroids, mask_bias, num_present, log_others, other_count,
            temperature, epsilon, reduction, return_stats,
        )


def _varcon_from_centroids(
    z: Tensor,
    index: Tensor,
    centroids: Tensor,
    mask_bias: Tensor | None,
    num_present: Tensor | float,
    log_others: Tensor | float,
    other_count: Tensor | float,
    temperature: float,
    epsilon: float,
    reduction: str,
    return_stats: bool,
) -> Tensor | tuple[Tensor, VarConStats]:
    """Eqs. 7, 8, 10-13 given the columns of the softmax: ``centroids`` [K, D] pre-scaled
    by 1/tau1 (columns outside the softmax exactly zero, and -inf in ``mask_bias``), C =
    ``num_present`` columns in the softmax, ``log_others`` = log(C - 1) and ``other_count``
    = max(C - 1, 1). Shared by :func:`varcon_loss` and :func:`varcon_prototype_loss`."""
    # Work with logit differences d_c = l_c - l_r over the other classes, so that
    # -log p(r|z) = softplus(logsumexp_{c != r} d_c) keeps full relative precision
    # for confident samples (lse - l_r would cancel to a few ulps of 1/tau1).
    if centroids.requires_grad:
        terms = _class_logit_terms_autograd(z, centroids, mask_bias, index)
    else:
        terms = _ClassLogitTerms.apply(z, centroids, mask_bias, index)
    lse_other, logit_true, sum_logits = terms
    nll = F.softplus(lse_other)  # -log p(r|z)
    log_p_true = -nll
    confidence = log_p_true.exp()

    tau2 = (temperature - epsilon) + 2.0 * epsilon * confidence
    inv_tau2 = tau2.reciprocal()  # a
    log_q_true = -F.softplus(log_others - inv_tau2)  # a - log Z, Z = e^a + C - 1
    log_q_other = log_q_true - inv_tau2  # -log Z
    q_true = log_q_true.exp()
    others_mass = torch.exp(log_others + log_q_other)  # (C-1) * q_o; exactly 0 when C = 1

    sum_other_diffs = sum_logits - num_present * logit_true  # sum_{c != r} d_c
    mean_other_diffs = sum_other_diffs / other_count
    # KL = q_r (log q_r - log p_r) + (C-1) q_o mean_{c != r}(log q_o - log p_c),
    # with log p_c = d_c + log p_r
    kl = q_true * (log_q_true - log_p_true) + others_mass * (
        log_q_other - log_p_true - mean_other_diffs
    )
    per_sample = kl + nll

    loss = _reduce(per_sample, reduction)
    if not return_stats:
        return loss
    stats = VarConStats(
        kl=kl.detach(),
        nll=nll.detach(),
        tau2=tau2.detach(),
        confidence=confidence.detach(),
        classes_in_batch=torch.as_tensor(num_present, dtype=z.dtype, device=z.device).detach(),
    )
    return loss, stats


def check_prototypes(prototypes: Tensor, valid: Tensor, dim: int | None = None) -> None:
    """Raise ``ValueError`` unless ``prototypes`` is [K, dim] floating point (any D when
    ``dim`` is None) and ``valid`` a [K] bool mask on the same device."""
    if not isinstance(prototypes, Tensor) or not isinstance(valid, Tensor):
        raise ValueError("prototypes and valid must be torch.Tensor objects")
    if prototypes.dim() != 2 or not prototypes.is_floating_point():
        raise ValueError(
            f"prototypes must be a floating-point [K, D] matrix (one row per class), got "
            f"shape {tuple(prototypes.shape)} and dtype {prototypes.dtype}"
        )
    if dim is not None and prototypes.shape[1] != dim:
        raise ValueError(
            f"prototypes have dimension {prototypes.shape[1]} but the features have {dim}; "
            "build the prototypes with the embedding dimension of the features"
        )
    if valid.dtype != torch.bool or tuple(valid.shape) != (prototypes.shape[0],):
        raise ValueError(
            f"valid must be a bool mask of shape [K] = [{prototypes.shape[0]}], got shape "
            f"{tuple(valid.shape)} and dtype {valid.dtype}; e.g. valid = seen.bool()"
        )
    if valid.device != prototypes.device:
        raise ValueError(
            f"prototypes ({prototypes.device}) and valid ({valid.device}) must be on the same "
            "device; move both with .to(device)"
        )


def batch_class_centroids(z: Tensor, index: Tensor, num_classes: int) -> tuple[Tensor, Tensor]:
    """Normalised class centroids of a batch and which classes it holds.

    ``w_c = normalize(sum_{j : y_j = c} z_j)`` (= normalize(mean)), [K, D], exactly zero for
    classes absent from the batch; ``present`` [K] bool. Gradients flow to ``z`` unless
    the caller detaches it; no host-device synchronisation.
    """
    sums = z.new_zeros(num_classes, z.shape[1]).index_add(0, index, z)
    counts = torch.zeros(num_classes, dtype=torch.long, device=z.device).index_add_(
        0, index, torch.ones_like(index)
    )
    return F.normalize(sums, dim=1), counts > 0


def varcon_prototype_loss(
    features: Tensor,
    labels: Tensor,
    prototypes: Tensor,
    valid: Tensor,
    temperature: float = 0.1,
    epsilon: float = 0.02,
    *,
    detach_centroids: bool = True,
    reduction: str = "mean",
    return_stats: bool = False,
) -> Tensor | tuple[Tensor, VarConStats]:
    r"""VarCon loss whose softmax also runs over classes absent from the batch, through
    their prototypes (e.g. running averages of past centroids, :func:`ema_prototype_update`).

    With K classes, P the classes present in the batch, ``valid`` the classes whose
    prototype ``mu_c`` (row c of ``prototypes``, unit norm) may be used and
    A = P | valid the C = |A| classes of the softmax:

        w_c      = normalize( mean_{j : y_j = c} z_j )    c in P   (this batch's centroid)
        w_c      = mu_c                                    c in A \ P (the prototype)
        p(c|z_i) = softmax_{c in A}( z_i . w_c / tau1 )                       (Eq. 8)
        tau2_i   = (tau1 - eps) + 2 * eps * p(r|z_i)                          (Eq. 13)
        q(c|z_i) = [1 + (e^{1/tau2_i} - 1) 1{c = r}] / (e^{1/tau2_i} + C - 1)  (Eqs. 10-12)
        loss_i   = KL( q(.|z_i) || p(.|z_i) ) - log p(r|z_i)                  (Eq. 7)

    Present classes use the batch's own centroid even when they have a prototype: it is
    computed from the current encoder (no staleness) and, like the paper's, is a constant
    for the gradient (``detach_centroids=True``); the prototypes only add the absent
    classes as negatives (they never carry a gradient). With ``valid`` all False the
    loss is :func:`varcon_loss` with ``num_classes=K``, bit for bit. Classes neither
    present nor valid are left out of the softmax (their ``prototypes`` rows are unused).

    Cost: O(N*K*D) time, O(N*K) memory (the [N, K] logits), as :func:`varcon_loss`.

    Args:
        features: [N, D] embeddings (L2-normalised by the model; used as given).
        labels: [N] integer labels in [0, K).
        prototypes: [K, D] unit-norm class prototypes (constants: never differentiated).
        valid: [K] bool, the prototypes that may enter the softmax.
        temperature, epsilon, detach_centroids, reduction, return_stats: as in
            :func:`varcon_loss`. ``stats.classes_in_batch`` is C = |A|, the number of
            classes in the softmax.
    """
    check_hyperparameters(temperature, epsilon)
    check_reduction(reduction)
    check_prototypes(prototypes, valid)
    num_cols = prototypes.shape[0]
    check_inputs(features, labels, num_cols)
    check_prototypes(prototypes, valid, features.shape[1])

    dtype = _compute_dtype(features)
    with torch.autocast(device_type=features.device.type, enabled=False):
        z = features.to(dtype)
        index = labels.long()
        with torch.set_grad_enabled(torch.is_grad_enabled() and not detach_centroids):
            batch_centroids, present = batch_class_centroids(z, index, num_cols)
        if detach_centroids:
            batch_centroids = batch_centroids.detach()
        stored = prototypes.detach().to(dtype)
        # Columns outside the softmax must be exactly zero (sum_c w_c enters the KL term):
        # batch_centroids already is, for every class absent from the batch.
        from_store = valid & ~present
        centroids = torch.where(from_store[:, None], stored, batch_centroids) / temperature
        active = present | valid
        num_active = active.sum().to(dtype)  # C, as a tensor: no sync
        log_others = torch.log(num_active - 1)  # log(C-1); -inf when C = 1
        other_count = (num_active - 1).clamp_min(1)
        mask_bias = torch.zeros(num_cols, dtype=dtype, device=z.device).masked_fill(
            ~active, float("-inf")
        )
        return _varcon_from_centroids(
            z, index, centroids, mask_bias, num_active, log_others, other_count,
            temperature, epsilon, reduction, return_stats,
        )


@torch.no_grad()
def ema_prototype_update_(
    prototypes: Tensor, valid: Tensor, features: Tensor, labels: Tensor, momentum: float
) -> None:
    r"""One exponential-moving-average step of unit-norm class prototypes, in place and
    without autograd.

    For every class c present in the batch, with ``w_c = normalize(mean of its z_j)``:

        mu_c <- normalize( m * mu_c + (1 - m) * w_c )    if valid_c (seen before)
        mu_c <- w_c                                       otherwise (first sighting)
        valid_c <- True

    Absent classes keep their row and flag, bit for bit. A class whose update is not
    finite (NaN or inf features) keeps its old row and flag, so one bad step cannot poison
    the bank; this is decided per row on the device, with no host synchronisation.

    Only the rows of the batch's labels are computed and written (duplicates of a class
    carry identical values): O(N*D) work beyond one [K, D] zero fill for the class sums.

    Args:
        prototypes: [K, D] current prototypes, updated in place (kept in their dtype).
        valid: [K] bool, updated in place.
        features: [N, D]; labels: [N] in [0, K); momentum: m in [0, 1).
    """
    check_momentum(momentum)
    check_prototypes(prototypes, valid)
    check_inputs(features, labels, prototypes.shape[0])
    check_prototypes(prototypes, valid, features.shape[1])
    dtype = torch.promote_types(_compute_dtype(features), prototypes.dtype)
    with torch.autocast(device_type=features.device.type, enabled=False):
        z = features.detach().to(dtype)
        index = labels.long()
        sums = z.new_zeros(prototypes.shape[0], z.shape[1]).index_add_(0, index, z)
        centroid = F.normalize(sums[index], dim=1)  # w_{y_j}, one row per sample [N, D]
        old = prototypes[index].to(dtype)
        seen = valid[index]
        blended = F.normalize(momentum * old + (1.0 - momentum) * centroid, dim=1)
        new = torch.where(seen[:, None], blended, centroid)
        ok = torch.isfinite(new.sum(dim=1))  # NaN/inf anywhere in the row shows in its sum
        # every read above happens before these writes
        prototypes.index_copy_(0, index, torch.where(ok[:, None], new, old).to(prototypes.dtype))
        valid.index_copy_(0, index, seen | ok)


def check_momentum(momentum: float) -> None:
    """Raise ``ValueError`` unless ``0 <= momentum < 1``."""
    m = _as_real(momentum)
    if m is None or not 0 <= m < 1:
        raise ValueError(
            f"momentum must be a number in [0, 1), got {momentum!r}; it is the weight of the "
            "old prototype in each update (e.g. momentum=0.9; 0 keeps only the newest centroid)"
        )


def supcon_loss(
    features: Tensor,
    labels: Tensor,
    temperature: float = 0.1,
    *,
    num_classes: int | None = None,
    reduction: str = "mean",
) -> Tensor:
    r"""Supervised contrastive loss, L_out form (Khosla et al., NeurIPS 2020, Eq. 2).

    With P(i) = {p != i : y_p = y_i} and A(i) = {a != i}:

        loss_i = -1/|P(i)| * sum_{p in P(i)}
                 log[ exp(z_i.z_p/tau) / sum_{a in A(i)} exp(z_i.z_a/tau) ]

    Anchors without a positive are left out of the mean ("mean" averages over the
    anchors that have one; with none the loss is 0) and are 0 with reduction "none".
    The temperature is used as is (no ``temperature / base_temperature`` factor), as
    in pytorch-metric-learning's ``SupConLoss``.

    The positives' logits are summed through per-class feature sums,
    ``sum_{p in P(i)} z_i.z_p = z_i.(S_{y_i} - z_i)``, so the only [N, N] work is
    the similarity matmul and one logsumexp.

    Args:
        features: [N, D] (all views flattened into rows, labels repeated per view).
        labels: [N] integer labels.
        temperature: tau > 0.
        num_classes: optional; labels in [0, num_classes), avoids ``torch.unique``.
        reduction: "mean" | "sum" | "none".
    """
    check_hyperparameters(temperature)
    check_reduction(reduction)
    check_inputs(features, labels, num_classes)

    dtype = _compute_dtype(features)
    with torch.autocast(device_type=features.device.type, enabled=False):
        z = features.to(dtype)
        n = z.shape[0]
        index, num_cols = _class_index(labels, num_classes)
        z_scaled = z / temperature
        logits = z_scaled @ z.T  # [N, N]
        self_mask = torch.eye(n, dtype=torch.bool, device=z.device)
        lse = torch.logsumexp(logits.masked_fill(self_mask, float("-inf")), dim=1)  # over A(i)

        class_sums = z.new_zeros(num_cols, z.shape[1]).index_add(0, index, z)
        counts = torch.zeros(num_cols, dtype=dtype, device=z.device).index_add_(
            0, index, torch.ones(n, dtype=dtype, device=z.device)
        )
        num_pos = counts[index] - 1  # |P(i)|
        pos_logit_sum = (z_scaled * (class_sums[index] - z)).sum(1)
        has_pos = num_pos > 0
        per_sample = torch.where(has_pos, lse - pos_logit_sum / num_pos.clamp_min(1), 0.0)

    if reduction == "mean":
        return per_sample.sum() / has_pos.sum().clamp_min(1)
    return _reduce(per_sample, reduction)
