"""Collapse diagnostics for self-supervised embeddings (no labels needed)."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["effective_rank", "marginal_entropy"]


@torch.no_grad()
def effective_rank(features: Tensor) -> Tensor:
    r"""Effective rank of a batch of embeddings (Roy & Vetterli 2007; RankMe, Garrido et al.
    2023), a 0-d float tensor in [1, min(N, D)]:

        p_k = sigma_k / sum_j sigma_j,    erank = exp(-sum_k p_k log p_k)

    over the singular values ``sigma`` of ``features`` [N, D]. A complete collapse (every
    embedding the same direction) gives 1; embeddings spread evenly over D directions give
    D. No host synchronisation on the CPU.
    """
    if features.dim() != 2 or features.shape[0] < 1:
        raise ValueError(f"features must be a non-empty [N, D] matrix, got "
                         f"{tuple(features.shape)}")
    sigma = torch.linalg.svdvals(features.detach().float())
    p = sigma / sigma.sum().clamp_min(torch.finfo(sigma.dtype).tiny)
    entropy = -(p * torch.log(p.clamp_min(torch.finfo(p.dtype).tiny))).sum()
    return entropy.exp()


@torch.no_grad()
def marginal_entropy(log_p: Tensor) -> Tensor:
    r"""Entropy (nats) of the batch-marginal pseudo-class distribution, 0-d:

        pbar_k = 1/N sum_i p(k | z_i),   H = -sum_k pbar_k log pbar_k  in [0, log K]

    from ``log_p`` [N, K] (log posteriors, rows summing to 1). log K: every pseudo-class
    used equally; 0: the whole batch predicts one.
    """
    log_bar = torch.logsumexp(log_p.detach(), dim=0) - torch.log(
        torch.tensor(float(log_p.shape[0]), dtype=log_p.dtype, device=log_p.device))
    return -(log_bar.exp() * log_bar).sum()
