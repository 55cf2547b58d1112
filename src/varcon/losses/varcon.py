"""The VarCon loss as an ``nn.Module``."""

from __future__ import annotations

from torch import Tensor, nn

from .distributed import check_gradient_scale, gather_batch
from .functional import (
    VarConStats,
    check_hyperparameters,
    check_reduction,
    varcon_loss,
)

__all__ = ["VarConLoss"]


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

    Shapes:
        features [N, D] floating point, labels [N] integer -> loss 0-d (or [N]).

    Example:
        >>> loss_fn = VarConLoss(temperature=0.1, epsilon=0.02)
        >>> loss, stats = loss_fn(features, labels, return_stats=True)
        >>> stats.tau2.mean(), stats.confidence.mean()
    """

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
    ) -> None:
        super().__init__()
        check_hyperparameters(temperature, epsilon)
        check_reduction(reduction)
        check_gradient_scale(gradient_scale)
        if num_classes is not None and (not isinstance(num_classes, int) or num_classes < 1):
            raise ValueError(f"num_classes must be a positive int or None, got {num_classes!r}")
        self.temperature = float(temperature)
        self.epsilon = float(epsilon)
        self.num_classes = num_classes
        self.detach_centroids = detach_centroids
        self.reduction = reduction
        self.gather_distributed = gather_distributed
        self.gradient_scale = gradient_scale

    def forward(
        self, features: Tensor, labels: Tensor, return_stats: bool = False
    ) -> Tensor | tuple[Tensor, VarConStats]:
        if self.gather_distributed:
            features, labels = gather_batch(
                features, labels, self.gradient_scale, num_classes=self.num_classes
            )
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

    def extra_repr(self) -> str:
        return (
            f"temperature={self.temperature}, epsilon={self.epsilon}, "
            f"num_classes={self.num_classes}, detach_centroids={self.detach_centroids}, "
            f"reduction={self.reduction!r}, gradient_scale={self.gradient_scale!r}"
        )
