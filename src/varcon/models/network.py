"""Encoder + head network, the builder used by training, and its spec (plain data).

A checkpoint's ``"network"`` entry is a *spec*: the plain-data arguments that rebuild the
architecture (:func:`network_spec`, :func:`build_network_from_spec`), so evaluation never
needs the training config or the training loop. Which head a method needs comes from the
method registry (:mod:`varcon.methods`): a projection head or a linear classifier.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

import torch
from torch import nn

from varcon.methods import get_method

from .heads import ProjectionHead
from .registry import create_model

__all__ = ["Network", "build_head", "build_network", "build_network_from_spec",
           "network_spec"]


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

    Methods with a projection head (``"varcon"``, ``"supcon"``):
    ``ProjectionHead(enc.out_dim, head_hidden, head_dim)`` (unit-norm ``[N, head_dim]``);
    with a classifier head (``"ce"``): ``nn.Linear(enc.out_dim, num_classes)`` (logits
    ``[N, num_classes]``). Unknown ``method`` raises ``ValueError``.
    """
    spec = get_method(method)  # an unknown method fails before the encoder is built
    # 0 classes: unlabelled training data, fine for a projection head
    if int(num_classes) < (1 if spec.head == "classifier" else 0):
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    encoder = create_model(
        encoder_name, in_channels=in_channels, image_size=image_size, **encoder_kwargs
    )
    return Network(encoder, build_head(method, cast(int, encoder.out_dim), num_classes=num_classes,
                                       head_dim=head_dim, head_hidden=head_hidden))


def build_head(
    method: str, in_dim: int, *, num_classes: int, head_dim: int = 128,
    head_hidden: int | None = None,
) -> nn.Module:
    """The method's head on ``[N, in_dim]`` encoder features (see :func:`build_network`)."""
    if get_method(method).head == "classifier":
        return nn.Linear(int(in_dim), int(num_classes))
    return ProjectionHead(int(in_dim), head_hidden, head_dim)


def network_spec(
    method: str,
    encoder: str,
    *,
    num_classes: int,
    in_channels: int,
    image_size: int,
    head_dim: int = 128,
    head_hidden: int | None = None,
    encoder_kwargs: Mapping[str, Any] | None = None,
    mean: tuple[float, ...] | list[float] | None = None,
    std: tuple[float, ...] | list[float] | None = None,
) -> dict[str, Any]:
    """Plain data that rebuilds a network with :func:`build_network_from_spec`.

    ``mean``/``std`` (per channel, [0, 1] units) record the input normalisation the encoder
    was trained with, so evaluation on other data feeds it what it expects.
    """
    return {
        "method": method,
        "encoder": encoder,
        "num_classes": int(num_classes),
        "in_channels": int(in_channels),
        "image_size": int(image_size),
        "head_dim": int(head_dim),
        "head_hidden": head_hidden,
        "encoder_kwargs": dict(encoder_kwargs or {}),
        "mean": None if mean is None else [float(v) for v in mean],
        "std": None if std is None else [float(v) for v in std],
    }


def build_network_from_spec(spec: Mapping[str, Any]) -> Network:
    """A randomly initialised :class:`Network` with the architecture ``spec`` describes.

    Specs of checkpoints written before ``encoder_kwargs`` existed rebuild with none.
    """
    return build_network(
        spec["method"],
        spec["encoder"],
        num_classes=spec["num_classes"],
        in_channels=spec["in_channels"],
        image_size=spec["image_size"],
        head_dim=spec["head_dim"],
        head_hidden=spec["head_hidden"],
        **dict(spec.get("encoder_kwargs") or {}),
    )
