"""Initialising an encoder from a local weights file (``model.pretrained=PATH``).

The file is a safetensors file (``.safetensors``) or a PyTorch state dict read with
``torch.load(..., weights_only=True)``; nothing is downloaded and nothing is unpickled
beyond tensors and plain data. Accepted layouts: the encoder's own state dict (for a timm
backbone, timm's state dict: its classifier entries are dropped, the encoder has none), the
same wrapped as ``{"state_dict": ...}`` or ``{"model": ...}``, a varcon checkpoint (its
``encoder.*`` entries), or a state dict whose every key carries a ``module.`` (DDP) or
``encoder.`` prefix. Every other mismatch is an error naming the first offending key and,
for a size mismatch, both shapes.

Pre-training applies the file once, before the first step; checkpoints then hold the
weights, so rebuilding a network from a checkpoint never reads the file again.
"""

from __future__ import annotations

import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

__all__ = ["PretrainedWeightsError", "load_encoder_weights", "read_state_dict"]


class PretrainedWeightsError(ValueError):
    """A ``model.pretrained`` file is missing, unreadable or does not fit the encoder."""


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors or ``torch.save`` file (``weights_only=True``), unwrapped
    from ``{"state_dict": ...}`` / ``{"model": ...}`` / a varcon checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise PretrainedWeightsError(
            f"model.pretrained: no file {path}; give a .safetensors or a PyTorch state-dict "
            "file (or model.pretrained=null for random initialisation)"
        )
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError) as exc:
            raise PretrainedWeightsError(
                f"model.pretrained: cannot read {path} as safetensors: {exc}"
            ) from exc
    unreadable = (
        f"model.pretrained: cannot read {path}: not a PyTorch state-dict file or a "
        ".safetensors file; safetensors files must end in '.safetensors'"
    )
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if not zipfile.is_zipfile(path):  # not torch.save's format: arbitrary bytes
            raise PretrainedWeightsError(unreadable) from exc
        raise PretrainedWeightsError(
            f"model.pretrained: refused to load {path}: it holds objects other than tensors "
            "and plain data (only weights_only=True loading is allowed); save the state dict "
            f"alone (torch.save(model.state_dict(), path)). Details: {str(exc).splitlines()[0]}"
        ) from exc
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, KeyError, IndexError,
            UnicodeDecodeError) as exc:
        raise PretrainedWeightsError(f"{unreadable} ({type(exc).__name__})") from exc
    if isinstance(obj, dict) and obj.get("format") == "varcon" and isinstance(
            obj.get("model"), dict):
        obj = {k[len("encoder."):]: v for k, v in obj["model"].items()
               if k.startswith("encoder.")}
    elif isinstance(obj, dict):
        for key in ("state_dict", "model"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        raise PretrainedWeightsError(
            f"model.pretrained: {path} holds no state dict (a mapping of parameter names to "
            "tensors)"
        )
    return obj


def _strip_prefix(state: dict[str, torch.Tensor], expected: set[str]) -> dict[str, torch.Tensor]:
    """Drop a ``module.``/``encoder.`` prefix that every key carries and the encoder's keys
    do not."""
    for prefix in ("module.", "encoder."):
        if all(k.startswith(prefix) for k in state) and not any(
                k.startswith(prefix) for k in expected):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def _classifier_prefixes(encoder: nn.Module) -> tuple[str, ...]:
    """timm names its classifier in ``pretrained_cfg["classifier"]`` (a name or several);
    the encoder is built without one, so those entries of a timm state dict are dropped."""
    cfg = getattr(encoder, "pretrained_cfg", None)
    names = cfg.get("classifier") if isinstance(cfg, Mapping) else None
    if isinstance(names, str):
        names = (names,)
    return tuple(f"{n}." for n in names or () if isinstance(n, str) and n)


def load_encoder_weights(encoder: nn.Module,
                         weights: str | Path | Mapping[str, torch.Tensor], *,
                         source: str | Path | None = None) -> nn.Module:
    """Copy ``weights`` (a file, or a state dict already read by :func:`read_state_dict`
    from ``source``) into ``encoder`` in place; returns it.

    Every parameter and buffer of the encoder must be in the file with the same shape, and
    the file may hold nothing else (except a timm classifier): otherwise
    :class:`PretrainedWeightsError` names the first mismatching key (with both shapes).
    """
    if isinstance(weights, (str, Path)):
        path, state = weights, read_state_dict(weights)
    else:
        path, state = (source or "the given state dict"), dict(weights)
    own = encoder.state_dict()
    state = _strip_prefix(state, set(own))
    drop = _classifier_prefixes(encoder)
    if drop:
        state = {k: v for k, v in state.items() if not k.startswith(drop) or k in own}
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [(k, tuple(state[k].shape), tuple(v.shape)) for k, v in own.items()
             if k in state and state[k].shape != v.shape]
    name = type(encoder).__name__
    if wrong:
        key, theirs, ours = wrong[0]
        raise PretrainedWeightsError(
            f"model.pretrained: {path} does not fit the {name} encoder: {key!r} has shape "
            f"{list(theirs)} in the file but {list(ours)} in the model ({len(wrong)} size "
            "mismatch(es)); check model.encoder, model.kwargs and the data's channels"
        )
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} key(s) missing from the file, first {missing[0]!r}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s) in the file, first "
                         f"{unexpected[0]!r}")
        raise PretrainedWeightsError(
            f"model.pretrained: {path} does not fit the {name} encoder: {'; '.join(parts)}. "
            "The file must hold the encoder's state dict (e.g. torch.save(encoder.state_dict()"
            ", path)) for the same model.encoder and model.kwargs"
        )
    with torch.no_grad():
        encoder.load_state_dict(state, strict=True)
    return encoder
