"""Encoders from timm: ``model.encoder=timm/<name>`` (e.g. ``timm/convnext_atto``).

``timm_encoder("convnext_atto", in_channels=3, image_size=32)`` is
``timm.create_model("convnext_atto", pretrained=False, num_classes=0, in_chans=3)``: timm's
own module, randomly initialised, whose ``forward`` maps images ``[N, C, H, W]`` to pooled
features ``[N, out_dim]`` (``num_classes=0`` removes the classifier, keeping timm's pooling
and pre-logits). ``out_dim`` is set on the module from timm's ``head_hidden_size`` (the width
of what ``num_classes=0`` returns; it differs from ``num_features`` only for models with a
hidden pre-logits layer, e.g. MobileNetV3) or ``num_features``. The module is returned
unwrapped, so its state dict is timm's (without the classifier) and weights move freely
between varcon and timm.

Nothing is downloaded: timm is always called with ``pretrained=False``; weights come from a
local file through ``model.pretrained`` (:mod:`varcon.models.weights`). timm is the optional
extra ``varcon[timm]``, imported only when a ``timm/`` name is used.
"""

from __future__ import annotations

import importlib
from typing import Any

import torch
from torch import nn

from .registry import register_prefix

__all__ = ["TIMM_PREFIX", "TimmNotInstalledError", "check_timm_model", "timm_encoder"]

TIMM_PREFIX = "timm/"

# timm.create_model arguments varcon sets itself, or that would load weights at run time.
_RESERVED = {
    "pretrained": "timm is always called with pretrained=False (no download at run time); "
                  "give local weights with model.pretrained=PATH",
    "checkpoint_path": "weights would be re-read whenever a checkpoint is rebuilt; give them "
                       "with model.pretrained=PATH",
    "pretrained_cfg": "varcon downloads nothing; give local weights with model.pretrained=PATH",
    "pretrained_cfg_overlay": "varcon downloads nothing; give local weights with "
                              "model.pretrained=PATH",
    "cache_dir": "varcon downloads nothing; give local weights with model.pretrained=PATH",
    "num_classes": "the encoder returns pooled features (num_classes=0); the method's head "
                   "is added by varcon",
    "in_chans": "set from the data's number of channels",
    "features_only": "the encoder must return pooled features [N, out_dim]",
}


class TimmNotInstalledError(ImportError):
    """``model.encoder=timm/...`` without timm installed."""


def _timm() -> Any:
    try:
        return importlib.import_module("timm")
    except ImportError as exc:
        raise TimmNotInstalledError(
            "timm backbones (model.encoder=timm/<name>) need timm, which is not installed: "
            'pip install "varcon[timm]"'
        ) from exc


def _check_name(timm: Any, name: str) -> None:
    if not name or not timm.is_model(name):
        raise ValueError(
            f"unknown timm model {name!r} (model.encoder={TIMM_PREFIX}{name}); find names "
            "with python -c \"import timm; print(timm.list_models('convnext*'))\" "
            "(any pattern, e.g. 'vit_tiny*', 'resnet*')"
        )


def _check_reserved(name: str, kwargs: dict[str, Any]) -> None:
    reserved = sorted(set(kwargs) & set(_RESERVED))
    if reserved:
        reasons = "; ".join(f"{k}: {_RESERVED[k]}" for k in reserved)
        raise TypeError(f"timm model {name!r}: remove {reserved} from model.kwargs ({reasons})")
    if kwargs.get("global_pool", None) == "":
        raise TypeError(
            f"timm model {name!r}: global_pool='' returns unpooled feature maps; the encoder "
            "must return pooled features [N, out_dim] (leave global_pool unset or use e.g. "
            "'avg')"
        )


def check_timm_model(name: str, kwargs: dict[str, Any]) -> None:
    """Raise ``ValueError`` for an unknown timm model ``name`` and ``TypeError`` for
    arguments it does not accept, without allocating weights (config validation).

    The model is built on PyTorch's ``meta`` device (shapes only, no memory), so timm's own
    argument checks run; models whose construction needs real tensors are checked at build
    time instead.
    """
    timm = _timm()
    _check_name(timm, name)
    _check_reserved(name, kwargs)
    try:
        with torch.device("meta"):
            timm.create_model(name, pretrained=False, num_classes=0, **kwargs)
    except TypeError as exc:
        raise TypeError(f"timm model {name!r} rejected model.kwargs {kwargs}: {exc}") from exc
    except (ValueError, AssertionError) as exc:
        raise ValueError(f"timm model {name!r} rejected model.kwargs {kwargs}: {exc}") from exc
    except (RuntimeError, NotImplementedError):
        return  # needs real tensors to build: the real construction will tell


def timm_encoder(name: str, *, in_channels: int = 3, image_size: int = 224,
                 **kwargs: Any) -> nn.Module:
    """``timm.create_model(name, pretrained=False, num_classes=0, in_chans=in_channels,
    **kwargs)`` with ``out_dim`` set: images ``[N, in_channels, H, W]`` -> ``[N, out_dim]``.

    ``image_size`` is checked against models with a fixed input size (ViTs): a mismatch
    raises ``ValueError`` naming ``model.kwargs.img_size=<image_size>`` as the fix.
    """
    timm = _timm()
    _check_name(timm, name)
    _check_reserved(name, kwargs)
    if int(in_channels) < 1:
        raise ValueError(f"in_channels must be >= 1, got {in_channels}")
    if int(image_size) < 1:
        raise ValueError(f"image_size must be >= 1, got {image_size}")
    try:
        model = timm.create_model(name, pretrained=False, num_classes=0,
                                  in_chans=int(in_channels), **kwargs)
    except TypeError as exc:
        raise TypeError(f"timm model {name!r} rejected model.kwargs {kwargs}: {exc}") from exc
    _check_input_size(name, model, int(image_size))
    # What forward() returns with num_classes=0: the pre-logits width when the model has a
    # hidden head layer (head_hidden_size, timm >= 1.0), else the backbone's num_features.
    out_dim = getattr(model, "head_hidden_size", None) or getattr(model, "num_features", None)
    if not isinstance(out_dim, int) or out_dim <= 0:
        raise TypeError(f"timm model {name!r} reports no feature width (num_features)")
    existing = model.__dict__.get("out_dim", out_dim)
    if existing != out_dim:  # never silently change an attribute timm itself uses
        raise TypeError(f"timm model {name!r} already has an out_dim attribute ({existing!r})")
    model.out_dim = int(out_dim)
    return model


def _check_input_size(name: str, model: nn.Module, image_size: int) -> None:
    """Models with a fixed-size patch embedding (ViT, DeiT, ...) refuse other sizes at the
    first forward pass; say so, with the fix, before any work."""
    embed = getattr(model, "patch_embed", None)
    size = getattr(embed, "img_size", None)
    if size is None or not getattr(embed, "strict_img_size", False):
        return
    if tuple(size) != (image_size, image_size):
        raise ValueError(
            f"timm model {name!r} takes {size[0]}x{size[1]} images but the data are "
            f"{image_size}x{image_size}; set model.kwargs.img_size={image_size} (or "
            "model.kwargs.dynamic_img_size=true, or data.image_size to match)"
        )


def _factory(name: str, **kwargs: Any) -> nn.Module:
    return timm_encoder(name, **kwargs)


register_prefix(TIMM_PREFIX, _factory, check_timm_model,
                example="a timm backbone timm/<name>, e.g. timm/convnext_atto (pip install "
                        '"varcon[timm]")')
