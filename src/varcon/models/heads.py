"""Projection head of SupCon/VarCon."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ProjectionHead"]


class ProjectionHead(nn.Module):
    """Linear-ReLU-Linear MLP with L2-normalised output: ``[N, in_dim] -> [N, out_dim]``.

    ``hidden_dim=None`` uses ``in_dim`` (SupCon's ``dim_in -> dim_in -> feat_dim`` head).
    Every output row has unit Euclidean norm (``F.normalize(dim=1)``).
    """

    def __init__(self, in_dim: int, hidden_dim: int | None = None, out_dim: int = 128) -> None:
        super().__init__()
        hidden_dim = in_dim if hidden_dim is None else hidden_dim
        for name, v in (("in_dim", in_dim), ("hidden_dim", hidden_dim), ("out_dim", out_dim)):
            if int(v) < 1:
                raise ValueError(f"{name} must be >= 1, got {v}")
        self.in_dim, self.hidden_dim, self.out_dim = int(in_dim), int(hidden_dim), int(out_dim)
        self.mlp = nn.Sequential(
            nn.Linear(self.in_dim, self.hidden_dim),
            nn.ReLU(inplace=True),
            nn.Linear(self.hidden_dim, self.out_dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``[N, in_dim]`` -> unit-norm embeddings ``[N, out_dim]``."""
        return F.normalize(self.mlp(x), dim=1)
