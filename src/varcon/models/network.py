"""Encoder + head network and the builder used by training."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .heads import ProjectionHead
from .registry import create_model

__all__ = ["METHODS", "Network", "build_head", "build_network"]

METHODS = ("varcon", "supcon", "ce")


class Network(nn.Module):
    """``forward(x) = head(encoder(x))``; ``encode(x) = encoder(x)``.

    ``out_dim`` is the encoder's feature dimension (``encoder.out_dim``) when it has one.
    """

    def __init__(self, encoder: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head
        dim = getattr(encoder, "out_dim", None)
        if isinstance(dim, int):
            self.out_dim = dim

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Encoder features: ``[N, C, H, W] -> [N, encoder.out_dim]``."""
        return self.encoder(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Head output: ``[N, C, H, W] -> [N, head_dim]`` (unit-norm) or ``[N, num_classes]``."""
        return self.head(self.encoder(x))


def build_network(
    method: str,
    encoder_name: str,
    *,
    num_classes: int,
    in_channels: int,
    image_size: int,
    head_dim: int = 128,
    head_hidden: int | None = None,
    **encoder_kwargs: Any,
) -> Network:
    """Encoder ``create_model(encoder_name, ...)`` plus the method's head.

    ``"varcon"``/``"supcon"``: ``ProjectionHead(enc.out_dim, head_hidden, head_dim)`` (unit-norm
    ``[N, head_dim]``); ``"ce"``: ``nn.Linear(enc.out_dim, num_classes)`` (logits
    ``[N, num_classes]``). Unknown ``method`` raises ``ValueError``.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {list(METHODS)}")
    if int(num_classes) < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    encoder = create_model(
        encoder_name, in_channels=in_channels, image_size=image_size, **encoder_kwargs
    )
    return Network(encoder, build_head(method, encoder.out_dim, num_classes=num_classes,
                                       head_dim=head_dim, head_hidden=head_hidden))


def build_head(
    method: str, in_dim: int, *, num_classes: int, head_dim: int = 128,
    head_hidden: int | None = None,
) -> nn.Module:
    """The method's head on ``[N, in_dim]`` encoder features (see :func:`build_network`)."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {list(METHODS)}")
    if method == "ce":
        return nn.Linear(int(in_dim), int(num_classes))
    return ProjectionHead(int(in_dim), head_hidden, head_dim)
