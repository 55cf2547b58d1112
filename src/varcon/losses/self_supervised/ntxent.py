"""NT-Xent (SimCLR): each image its own class, its other views the positives."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..distributed import check_gradient_scale, gather_batch
from ..functional import check_hyperparameters, check_inputs, check_reduction, supcon_loss

__all__ = ["NTXentLoss", "instance_labels", "ntxent_loss"]


def check_views(views: object) -> int:
    """``views`` as an int >= 2 (``ValueError`` otherwise)."""
    if isinstance(views, bool) or not isinstance(views, int) or views < 2:
        raise ValueError(
            f"views must be an int >= 2 (augmented views per image: each image's other "
            f"views are its positives), got {views!r}"
        )
    return views


def instance_labels(num_rows: int, views: int, device: torch.device | None = None) -> Tensor:
    """``[N]`` image index of each row when the V views of an image are adjacent rows:
    ``arange(N) // V``. ``ValueError`` unless V divides N."""
    if num_rows % views:
        raise ValueError(
            f"{num_rows} rows are not whole images of {views} views each; put the views of "
            "one image on adjacent rows ([B, V, D] -> reshape(B * V, D)) and pass views=V"
        )
    return torch.arange(num_rows, device=device) // views


def ntxent_loss(features: Tensor, views: int = 2, temperature: float = 0.5, *,
                reduction: str = "mean") -> Tensor:
    r"""NT-Xent (Chen et al., SimCLR, ICML 2020, Eq. 1), for V >= 2 views per image.

    Rows ``i`` of ``features`` [N, D] (L2-normalised; the views of one image on adjacent
    rows, N = B * V) with P(i) the other views of i's image and A(i) = {a != i}:

        loss_i = -1/|P(i)| sum_{p in P(i)} log softmax_{a in A(i)}(z_i . z_a / tau)[p]

    With V = 2 this is SimCLR's loss: the 2(B - 1) other rows are the negatives. It is
    :func:`~varcon.losses.functional.supcon_loss` with instance labels ``arange(N) // V``
    (tested against pytorch-metric-learning's and lightly's ``NTXentLoss``). O(N^2 D) time.

    Args:
        features: [N, D], N = B * V.
        views: V, rows per image.
        temperature: tau > 0 (SimCLR uses 0.5 on CIFAR-10).
        reduction: "mean" | "sum" | "none".
    """
    check_hyperparameters(temperature)
    check_views(views)
    if not isinstance(features, Tensor) or features.dim() != 2:
        raise ValueError("features must be a 2-D tensor [N, D] with N = images * views")
    labels = instance_labels(features.shape[0], views, features.device)
    return supcon_loss(features, labels, temperature, num_classes=max(1, labels.numel() // views),
                       reduction=reduction)


class NTXentLoss(nn.Module):
    r"""NT-Xent, SimCLR's contrastive loss (see :func:`ntxent_loss` for the equation).

    Multi-process training: the loss sees the global batch (all ranks' rows in rank order,
    so ``arange(N_global) // V`` still names each image) with the exact gradient, as
    :class:`~varcon.losses.VarConLoss` does.

    Args:
        temperature: tau > 0 (default 0.5, SimCLR's CIFAR-10 value).
        views: V >= 2 views per image on adjacent rows (default 2).
        reduction, gather_distributed, gradient_scale, equal_shards: as in
            :class:`~varcon.losses.SupConLoss`.

    Shapes:
        features [B * V, D] -> loss 0-d (or [B * V] with reduction "none"). Labels, when
        passed, are ignored (each image is its own class).

    Example:
        >>> loss_fn = NTXentLoss(temperature=0.5)
        >>> z = F.normalize(head(encoder(torch.stack([x1, x2], 1).flatten(0, 1))), dim=1)
        >>> loss = loss_fn(z)
    """

    def __init__(self, temperature: float = 0.5, views: int = 2, *, reduction: str = "mean",
                 gather_distributed: bool = True, gradient_scale: str = "exact",
                 equal_shards: bool = False) -> None:
        super().__init__()
        check_hyperparameters(temperature)
        check_reduction(reduction)
        check_gradient_scale(gradient_scale)
        self.temperature = float(temperature)
        self.views = check_views(views)
        self.reduction = reduction
        self.gather_distributed = gather_distributed
        self.gradient_scale = gradient_scale
        self.equal_shards = bool(equal_shards)

    def forward(self, features: Tensor, labels: Tensor | None = None) -> Tensor:
        if self.gather_distributed:
            rows = torch.zeros(features.shape[0] if features.dim() else 0, dtype=torch.long,
                               device=features.device)
            check_inputs(features, rows, allow_empty=False)
            features, _ = gather_batch(features, rows, self.gradient_scale,
                                       equal_shards=self.equal_shards)
        return ntxent_loss(features, self.views, self.temperature, reduction=self.reduction)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, views={self.views}, reduction={self.reduction!r}"
