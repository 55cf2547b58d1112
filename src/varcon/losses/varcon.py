"""The VarCon loss as an ``nn.Module``."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from .distributed import check_gradient_scale, gather_batch
from .functional import (
    VarConStats,
    check_hyperparameters,
    check_momentum,
    check_reduction,
    ema_prototype_update_,
    varcon_loss,
    varcon_prototype_loss,
)

__all__ = ["PROTOTYPE_MODES", "VarConLoss"]

PROTOTYPE_MODES = ("batch", "ema")


class VarConLoss(nn.Module):
    r"""Variational supervised contrastive loss (Wang et al., NeurIPS 2025).

    Per sample z (L2-normalised embedding) with label r, over the C classes present
    in the batch, with centroids ``w_c = normalize(mean of the z_j of class c)``:

        p(c|z) = softmax_c(z . w_c / tau1)                                 (Eq. 8)
        tau2   = (tau1 - eps) + 2 eps p(r|z)                               (Eq. 13)
        q(c|z) = [1 + (e^{1/tau2} - 1) 1{c = r}] / (e^{1/tau2} + C - 1)    (Eqs. 10-12)
        loss   = KL(q || p) - log p(r|z)                                   (Eq. 7)

    averaged over the batch. See :func:`varcon.losses.functional.varcon_loss` for the
    log-space evaluation, which costs O(N*C*D) time and O(N*C) memory.

    Multi-process training: when ``torch.distributed`` is initialised with more than
    one rank, the loss sees the global batch (all ranks' rows, in rank order) and the
    local rows' gradient is scaled so that DDP's averaging yields the exact gradient of
    the global-batch loss (``gradient_scale="exact"``), or the authors' 1/W of it
    (``"per_rank"``). Stats and reduction "none" then cover the global batch.

    Class prototypes across steps (``prototypes="ema"``, needs ``num_classes`` = K): with
    many classes or small batches most classes are absent from a batch. The module then
    keeps one unit-norm prototype mu_c per class (buffer ``class_prototypes`` [K, D]) and
    which classes have been seen (``class_seen`` [K] bool), both in its ``state_dict``.
    With P the classes of this (global) batch, S the classes seen before it and
    A = P | S the C = |A| classes of the softmax:

        w_c    = normalize(mean of this batch's z_j of class c)   c in P
        w_c    = mu_c                                              c in S \ P
        p(c|z) = softmax_{c in A}(z . w_c / tau1),   q as above with C = |A|

    Present classes use this batch's own centroid, not their prototype: it comes from the
    current encoder (a prototype lags behind it), it is the paper's loss on those classes
    (a constant for the gradient by default), and the positive target of every sample is
    then exactly what batch mode gives; the prototypes only add the absent classes as
    negatives. Classes never seen are left out. After the loss, in training mode only
    (like BatchNorm's running statistics; ``.eval()`` freezes them) and without autograd:

        mu_c <- normalize(m mu_c + (1 - m) w_c)  (c in P and S),   mu_c <- w_c  (c in P, new)

    The update writes the buffers in place after the loss has been built from its own
    copy of the centroids, so it does not change this step's gradient. Under
    ``torch.distributed`` it uses the gathered global batch, so every rank holds the same
    prototypes (with ``gather_distributed=False`` each rank would keep its own). Cost per step
    O(N*K*D) time, O(N*K + K*D) memory: see
    :func:`varcon.losses.functional.varcon_prototype_loss`.

    Args:
        temperature: tau1 > 0 (default 0.1).
        epsilon: eps in [0, tau1) (default 0.02); 0 fixes tau2 = tau1.
        num_classes: optional total number of classes; labels must lie in
            [0, num_classes). Removes every host-device sync from the loss.
        detach_centroids: centroids are constants for the gradient (default, as in
            the paper); False lets gradients flow through them.
        reduction: "mean" (default) | "sum" | "none".
        gather_distributed: gather the global batch when distributed (default True).
        gradient_scale: "exact" (default) | "per_rank".
        equal_shards: every rank passes as many rows as this one (default False): the
            gather then skips exchanging the row counts (an all-gather the host reads).
        prototypes: "batch" (default: centroids of the batch's classes only, the paper)
            | "ema" (running class prototypes, above).
        momentum: m in [0, 1), the weight of the old prototype in each EMA update
            (default 0.9).
        embedding_dim: D, to allocate the prototypes now; by default they are
            allocated on the first forward (or by ``load_state_dict``).

    Shapes:
        features [N, D] floating point, labels [N] integer -> loss 0-d (or [N]).

    Example:
        >>> loss_fn = VarConLoss(temperature=0.1, epsilon=0.02)
        >>> loss, stats = loss_fn(features, labels, return_stats=True)
        >>> stats.tau2.mean(), stats.confidence.mean()
        >>> many = VarConLoss(num_classes=10_000, prototypes="ema", momentum=0.9)
        >>> loss = many(features, labels)  # then many.class_prototypes, many.class_seen
    """

    # buffers of prototypes="ema" (registered in __init__)
    class_prototypes: Tensor
    class_seen: Tensor

    def __init__(
        self,
        temperature: float = 0.1,
        epsilon: float = 0.02,
        *,
        num_classes: int | None = None,
        detach_centroids: bool = True,
        reduction: str = "mean",
        gather_distributed: bool = True,
        gradient_scale: str = "exact",
        equal_shards: bool = False,
        prototypes: str = "batch",
        momentum: float = 0.9,
        embedding_dim: int | None = None,
    ) -> None:
        super().__init__()
        check_hyperparameters(temperature, epsilon)
        check_reduction(reduction)
        check_gradient_scale(gradient_scale)
        if num_classes is not None and (not isinstance(num_classes, int) or num_classes < 1):
            raise ValueError(f"num_classes must be a positive int or None, got {num_classes!r}")
        if prototypes not in PROTOTYPE_MODES:
            raise ValueError(
                f"prototypes must be one of {PROTOTYPE_MODES}, got {prototypes!r}; use "
                "'batch' (centroids of the batch, the paper) or 'ema' (running prototypes)"
            )
        check_momentum(momentum)
        if prototypes == "ema" and num_classes is None:
            raise ValueError(
                "prototypes='ema' keeps one prototype per class and needs the total number "
                "of classes: pass num_classes=K (labels in [0, K))"
            )
        if embedding_dim is not None and (
            not isinstance(embedding_dim, int) or isinstance(embedding_dim, bool)
            or embedding_dim < 1
        ):
            raise ValueError(
                f"embedding_dim must be a positive int or None, got {embedding_dim!r}"
            )
        self.prototypes = prototypes
        self.momentum = float(momentum)
        if prototypes == "ema":
            assert num_classes is not None
            # D = 0 until the first forward (or load_state_dict) tells the dimension.
            self.register_buffer("class_prototypes", torch.zeros(num_classes, embedding_dim or 0))
            self.register_buffer("class_seen", torch.zeros(num_classes, dtype=torch.bool))
        self.temperature = float(temperature)
        self.epsilon = float(epsilon)
        self.num_classes = num_classes
        self.detach_centroids = detach_centroids
        self.reduction = reduction
        self.gather_distributed = gather_distributed
        self.gradient_scale = gradient_scale
        self.equal_shards = bool(equal_shards)

    def forward(
        self, features: Tensor, labels: Tensor, return_stats: bool = False
    ) -> Tensor | tuple[Tensor, VarConStats]:
        if self.gather_distributed:
            features, labels = gather_batch(
                features, labels, self.gradient_scale, num_classes=self.num_classes,
                equal_shards=self.equal_shards,
            )
        if self.prototypes == "batch":
            return varcon_loss(
                features,
                labels,
                self.temperature,
                self.epsilon,
                num_classes=self.num_classes,
                detach_centroids=self.detach_centroids,
                reduction=self.reduction,
                return_stats=return_stats,
            )
        self._allocate_prototypes(features)
        out = varcon_prototype_loss(
            features,
            labels,
            self.class_prototypes,
            self.class_seen,
            self.temperature,
            self.epsilon,
            detach_centroids=self.detach_centroids,
            reduction=self.reduction,
            return_stats=return_stats,
        )
        if self.training:
            # After the loss: the loss holds its own tensor of the centroids it used (never
            # the buffer), so writing the buffers in place leaves this step's graph and
            # gradient alone.
            ema_prototype_update_(
                self.class_prototypes, self.class_seen, features, labels, self.momentum
            )
        return out

    def _allocate_prototypes(self, features: Tensor) -> None:
        bank = self.class_prototypes
        if features.dim() == 2 and bank.shape[1] == 0:
            self.class_prototypes = bank.new_zeros(bank.shape[0], features.shape[1])
            bank = self.class_prototypes
        if bank.device != features.device or self.class_seen.device != features.device:
            raise ValueError(
                f"the class prototypes are on {bank.device} but the features on "
                f"{features.device}; move the loss to the features' device: "
                "loss_fn.to(device)"
            )

    def _load_from_state_dict(
        self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any
    ) -> None:
        # Prototypes not allocated yet (D unknown until the first forward): take the
        # saved dimension, so a fresh module loads a checkpoint.
        incoming = state_dict.get(prefix + "class_prototypes")
        bank = getattr(self, "class_prototypes", None)
        if (
            isinstance(incoming, Tensor) and bank is not None and bank.shape[1] == 0
            and incoming.dim() == 2 and incoming.shape[0] == bank.shape[0]
        ):
            self.class_prototypes = bank.new_zeros(incoming.shape)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        text = (
            f"temperature={self.temperature}, epsilon={self.epsilon}, "
            f"num_classes={self.num_classes}, detach_centroids={self.detach_centroids}, "
            f"reduction={self.reduction!r}, gradient_scale={self.gradient_scale!r}"
        )
        if self.prototypes == "ema":
            text += f", prototypes='ema', momentum={self.momentum}"
        return text
