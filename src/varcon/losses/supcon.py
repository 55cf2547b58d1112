"""The SupCon loss (L_out) as an ``nn.Module``."""

from __future__ import annotations

from torch import Tensor, nn

from .distributed import check_gradient_scale, gather_batch
from .functional import check_hyperparameters, check_reduction, supcon_loss

__all__ = ["SupConLoss"]


class SupConLoss(nn.Module):
    r"""Supervised contrastive loss, L_out (Khosla et al., NeurIPS 2020, Eq. 2).

        loss_i = -1/|P(i)| sum_{p in P(i)} log softmax_{a != i}(z_i . z_a / tau)[p]

    with P(i) the other rows sharing i's label; averaged over the anchors that have a
    positive. Same temperature semantics as pytorch-metric-learning's ``SupConLoss``
    (no base-temperature factor). Flatten all views into N rows and repeat the labels
    per view. O(N^2 D) time, O(N^2) memory.

    Multi-process behaviour is that of :class:`varcon.losses.VarConLoss`.

    Args:
        temperature: tau > 0 (default 0.1).
        num_classes: optional; labels in [0, num_classes), avoids ``torch.unique``.
        reduction: "mean" (default) | "sum" | "none" (0 for anchors without a positive).
        gather_distributed: gather the global batch when distributed (default True).
        gradient_scale: "exact" (default) | "per_rank".
        equal_shards: every rank passes as many rows as this one (default False): the
            gather then skips exchanging the row counts (an all-gather the host reads).
    """

    def __init__(
        self,
        temperature: float = 0.1,
        *,
        num_classes: int | None = None,
        reduction: str = "mean",
        gather_distributed: bool = True,
        gradient_scale: str = "exact",
        equal_shards: bool = False,
    ) -> None:
        super().__init__()
        check_hyperparameters(temperature)
        check_reduction(reduction)
        check_gradient_scale(gradient_scale)
        self.temperature = float(temperature)
        self.num_classes = num_classes
        self.reduction = reduction
        self.gather_distributed = gather_distributed
        self.gradient_scale = gradient_scale
        self.equal_shards = bool(equal_shards)

    def forward(self, features: Tensor, labels: Tensor) -> Tensor:
        if self.gather_distributed:
            features, labels = gather_batch(
                features, labels, self.gradient_scale, num_classes=self.num_classes,
                equal_shards=self.equal_shards,
            )
        return supcon_loss(
            features,
            labels,
            self.temperature,
            num_classes=self.num_classes,
            reduction=self.reduction,
        )

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, reduction={self.reduction!r}"
