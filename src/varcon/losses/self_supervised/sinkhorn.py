"""Balanced soft assignments by Sinkhorn-Knopp, in log space (SwAV's codes)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["check_sinkhorn", "sinkhorn_log"]


def check_sinkhorn(epsilon: object, iterations: object) -> None:
    """``ValueError`` unless ``epsilon`` is a finite number > 0 and ``iterations`` an int
    >= 1."""
    e = epsilon if isinstance(epsilon, (int, float)) and not isinstance(epsilon, bool) else None
    if e is None or not math.isfinite(e) or e <= 0:
        raise ValueError(
            f"sinkhorn_epsilon must be a finite number > 0 (the entropic regularisation: "
            f"smaller gives harder codes; SwAV uses 0.05), got {epsilon!r}"
        )
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
        raise ValueError(f"sinkhorn_iterations must be an int >= 1 (SwAV uses 3), got "
                         f"{iterations!r}")


@torch.no_grad()
def sinkhorn_log(scores: Tensor, iterations: int = 3, row_mask: Tensor | None = None) -> Tensor:
    r"""Log of the balanced assignment of N rows to K columns (Cuturi 2013; SwAV, Caron et
    al. 2020), without autograd.

    ``scores`` [N, K] are the logits ``z_i . w_k / eps_s``. Starting from
    ``Q = exp(scores)``, each iteration rescales the columns so that each sums to N/K (every
    prototype gets an equal share of the batch) and then the rows so that each sums to 1
    (each row a distribution over prototypes):

        log Q <- log Q - logsumexp_rows(log Q) + log(N / K)      (columns)
        log Q <- log Q - logsumexp_cols(log Q)                   (rows)

    All of it in log space, so a small ``eps_s`` (sharp codes) cannot overflow ``exp``: the
    naive form overflows float32 once a score exceeds ~88. ``row_mask`` [N] bool (optional)
    leaves the False rows out of the balance: they carry no mass (their ``log Q`` is -inf)
    and N counts the True rows only; a device tensor, so nothing waits for the host.
    Returns ``log Q`` [N, K] (rows sum to 1, or hold -inf where masked), float32 or float64
    like ``scores``.
    """
    if scores.dim() != 2 or scores.shape[0] < 1 or scores.shape[1] < 1:
        raise ValueError(f"scores must be a non-empty [N, K] matrix, got {tuple(scores.shape)}")
    n, k = scores.shape
    log_q = scores.to(torch.float64 if scores.dtype == torch.float64 else torch.float32)
    if row_mask is None:
        log_share: Tensor | float = math.log(n / k)
    else:
        if row_mask.shape != (n,) or row_mask.dtype != torch.bool:
            raise ValueError(f"row_mask must be a bool [N] = [{n}] tensor, got "
                             f"{tuple(row_mask.shape)} {row_mask.dtype}")
        keep = row_mask[:, None]
        log_q = log_q.masked_fill(~keep, -math.inf)
        log_share = torch.log(row_mask.sum().to(log_q.dtype).clamp_min(1) / k)
    for _ in range(iterations):
        log_q = log_q - torch.logsumexp(log_q, dim=0, keepdim=True) + log_share
        row_sums = torch.logsumexp(log_q, dim=1, keepdim=True)
        if row_mask is None:
            log_q = log_q - row_sums
        else:  # masked rows: -inf - (-inf) would be nan
            log_q = torch.where(keep, log_q - row_sums, log_q)
    return log_q
