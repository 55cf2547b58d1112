"""Rebuilding a trained network from a varcon checkpoint, safely.

A checkpoint (written by ``varcon pretrain``) holds only tensors and plain data, so it is read
with ``torch.load(..., weights_only=True)``; anything needing arbitrary unpickling is refused.
Its ``"network"`` entry is a *spec*: the plain-data arguments that rebuild the architecture
(:func:`network_spec`), so evaluation never needs the training config or the training loop.
"""

from __future__ import annotations

import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .network import Network, build_network

__all__ = [
    "CheckpointError",
    "build_network_from_spec",
    "find_checkpoint",
    "load_checkpoint",
    "load_encoder",
    "load_network",
    "network_spec",
]


class CheckpointError(ValueError):
    """A checkpoint is missing, truncated, unsafe or does not fit the model."""


def find_checkpoint(path: str | Path) -> Path:
    """The checkpoint file named by ``path``: a file, or a run directory (its
    ``checkpoints/last.pt``, else ``last.pt``)."""
    path = Path(path)
    if path.is_dir():
        candidate = path / "checkpoints" / "last.pt"
        path = candidate if candidate.exists() else path / "last.pt"
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint not found: {path}; pass a run directory or its checkpoints/last.pt"
        )
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a varcon checkpoint (file or run directory) with ``weights_only=True``."""
    path = find_checkpoint(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"refused to load {path}: it holds objects other than tensors and plain data, "
            "which could run code when unpickled (only weights_only=True loading is allowed). "
            f"Details: {str(exc).splitlines()[0]}"
        ) from exc
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError,
            # a non-zip file goes to the legacy unpickler, which fails on arbitrary bytes
            # with these (e.g. a text file starting with "h": BINGET of a missing memo key)
            KeyError, IndexError, UnicodeDecodeError) as exc:
        raise CheckpointError(
            f"cannot read checkpoint {path}: the file is truncated or not a PyTorch checkpoint "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}). "
            "Use an earlier checkpoint (checkpoints/epoch_<k>.pt) if there is one."
        ) from exc
    if not isinstance(obj, dict) or obj.get("format") != "varcon" or "model" not in obj:
        raise CheckpointError(f"{path} is not a varcon checkpoint (no 'format: varcon' entry)")
    if not isinstance(obj.get("network"), dict):
        raise CheckpointError(f"{path} has no 'network' entry: it cannot be rebuilt")
    return obj


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


def load_network(
    path: str | Path, *, map_location: str | torch.device = "cpu"
) -> tuple[Network, dict[str, Any]]:
    """Rebuild the whole network (encoder + head) of a checkpoint, in eval mode.

    Returns ``(network, checkpoint)``; the optimizer state in ``checkpoint`` is dropped.
    """
    state = load_checkpoint(path)
    spec = state["network"]
    try:
        net = build_network_from_spec(spec)
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(
            f"cannot rebuild the network of {path} from its spec {spec!r}: {exc}"
        ) from exc
    try:
        net.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise CheckpointError(
            f"checkpoint {path} does not fit encoder {spec.get('encoder')!r}: "
            f"{str(exc).splitlines()[0]}"
        ) from exc
    state.pop("optimizer", None)
    state.pop("scaler", None)
    return net.to(map_location).eval(), state


def load_encoder(path: str | Path, *, map_location: str | torch.device = "cpu") -> nn.Module:
    """The trained encoder of a run directory, a checkpoint file or an exported folder
    (``varcon export``), in eval mode.

    ``encoder(images [N, C, H, W]) -> features [N, encoder.out_dim]``; inputs are normalised
    as in training. ``encoder.transform`` is that preprocessing (a torchvision transforms-v2
    pipeline: PIL image or uint8 tensor ``[C, H, W]`` -> float32 ``[C, S, S]``), so
    ``encoder(encoder.transform(image)[None])`` embeds one image. Loaded with
    ``weights_only=True`` or from safetensors; no optimizer state is kept.
    """
    from .export import load_trained  # export builds on this module

    return load_trained(path, map_location=map_location).encoder
