"""Rebuilding a trained network or encoder, with its preprocessing, for use elsewhere.

A trained model comes from a run directory, a checkpoint file, or a folder written by
``varcon export`` (:mod:`varcon.export` writes it; this module reads it)::

    varcon_encoder.json       format name + version, architecture and its arguments,
                              normalisation mean/std, image size, method, source, config
    encoder.safetensors       the encoder's state dict (no optimizer state)
    head.safetensors          the head's state dict (``--head`` only)
    torchvision_<arch>.pth    ``--format torchvision`` only: a state dict for
                              ``torchvision.models.<arch>()`` (ResNets)

The encoder is rebuilt through the model registry, ``create_model(architecture,
**arguments)``, so any registered encoder (ResNets, the small CNN, ``timm/<name>``) exports
and loads the same way. :func:`load_trained` reads a run directory, a checkpoint file or an
exported folder (safetensors and ``torch.load(..., weights_only=True)`` only) and gives the
encoder in eval mode with ``encoder.transform``: the evaluation preprocessing (channels,
resize, centre crop, float, normalise) from a PIL image or a uint8 tensor ``[C, H, W]`` to the
float32 ``[C, S, S]`` tensor the encoder expects.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from varcon._text import shorten
from varcon.models import Network, build_head, build_network_from_spec, create_model, network_spec

from .format import CheckpointError, load_checkpoint
from .layout import find_checkpoint

__all__ = [
    "ENCODER_FILE",
    "EXPORT_FORMAT",
    "EXPORT_FORMAT_VERSION",
    "HEAD_FILE",
    "META_FILE",
    "TrainedModel",
    "eval_resize",
    "find_export",
    "load_encoder",
    "load_network",
    "load_trained",
    "preprocessing",
    "read_export_meta",
]

EXPORT_FORMAT = "varcon-encoder"
EXPORT_FORMAT_VERSION = 1
META_FILE = "varcon_encoder.json"
ENCODER_FILE = "encoder.safetensors"
HEAD_FILE = "head.safetensors"
# EvalTransform's default resize-before-crop ratio for images larger than 64 px (tested equal).
_EVAL_RESIZE_RATIO = 256 / 224
# Arguments build_network passes to every encoder factory; the rest are model.kwargs.
_COMMON_ARGUMENTS = ("in_channels", "image_size")


@dataclass
class TrainedModel:
    """A trained encoder (eval mode), its head when known, and what describes them.

    ``spec`` is the network spec (:func:`~varcon.models.network_spec`, with
    ``mean``/``std`` filled in); ``config`` the training config (plain data) or None;
    ``source`` where it came from; ``transform`` the evaluation preprocessing (also set as
    ``encoder.transform``).
    """

    encoder: nn.Module
    head: nn.Module | None
    spec: dict[str, Any]
    config: dict[str, Any] | None
    source: dict[str, Any]
    transform: Callable[[Any], torch.Tensor]
    origin: str = ""  # the file or folder it was read from

    def network(self) -> Network:
        """``Network(encoder, head)``; ``CheckpointError`` when the head was not exported."""
        if self.head is None:
            raise CheckpointError(
                f"{self.origin} holds no head (it was exported without --head); use encoder "
                "features, or export the checkpoint again with --head"
            )
        return Network(self.encoder, self.head).eval()

    @property
    def architecture(self) -> str:
        return str(self.spec["encoder"])

    @property
    def arguments(self) -> dict[str, Any]:
        """What ``create_model(architecture, **arguments)`` is given."""
        return {"in_channels": int(self.spec["in_channels"]),
                "image_size": int(self.spec["image_size"]),
                **dict(self.spec.get("encoder_kwargs") or {})}


# ------------------------------------------------------------------------ preprocessing


def eval_resize(image_size: int) -> int:
    """The shorter side an image is resized to before the centre crop of ``image_size``:
    ``image_size`` itself up to 64 px, else ``int(image_size * 256 / 224)``."""
    from varcon.data.datasets import SMALL_IMAGE_MAX

    size = int(image_size)
    return size if size <= SMALL_IMAGE_MAX else int(size * _EVAL_RESIZE_RATIO)


def preprocessing(image_size: int, mean: list[float] | tuple[float, ...],
                  std: list[float] | tuple[float, ...], in_channels: int) -> Any:
    """The evaluation transform as a ``torchvision.transforms.v2`` pipeline.

    PIL image or uint8 tensor ``[C, H, W]`` -> float32 tensor ``[in_channels, S, S]``
    (``S = image_size``): convert to ``in_channels`` (grey <-> RGB; PIL modes such as RGBA or
    P too) -> resize the shorter side (to S when S <= 64, else int(S * 256 / 224)) ->
    centre crop S x S -> [0, 1] -> ``(x - mean) / std``. For uint8 tensors it equals
    :class:`varcon.data.EvalTransform`, which evaluation uses (a resize to the size an image
    already has is skipped, as there).
    """
    from torchvision.transforms import v2

    size = int(image_size)
    steps: list[Any] = []
    if int(in_channels) == 1:
        steps.append(v2.Grayscale(num_output_channels=1))
    elif int(in_channels) == 3:
        steps.append(v2.RGB())
    steps += [v2.ToImage(), v2.Resize(eval_resize(size), antialias=True), v2.CenterCrop(size),
              v2.ToDtype(torch.float32, scale=True),
              v2.Normalize([float(m) for m in mean], [float(s) for s in std]),
              v2.ToPureTensor()]
    return v2.Compose(steps)


def _normalisation(spec: Mapping[str, Any], config: Mapping[str, Any] | None
                   ) -> tuple[list[float], list[float]]:
    """The spec's mean/std; for checkpoints written before the spec recorded them, the
    config's ``data.mean``/``data.std`` or the dataset's statistics (as evaluation does)."""
    channels = int(spec["in_channels"])
    mean, std = spec.get("mean"), spec.get("std")
    if not (mean and std):
        from varcon.data import dataset_names, get_dataset

        data = dict((config or {}).get("data") or {})
        name = data.get("dataset")
        dataset = get_dataset(name) if name in dataset_names() else None
        mean = data.get("mean") or (dataset.mean if dataset else None)
        std = data.get("std") or (dataset.std if dataset else None)
        if not (mean and std):
            raise CheckpointError(
                "the checkpoint records no input normalisation (network mean/std, or a config "
                "naming its dataset); it cannot be given its preprocessing"
            )
    mean, std = [float(v) for v in mean], [float(v) for v in std]
    if len(mean) == 1 and channels > 1:
        mean, std = mean * channels, std * channels
    return mean, std


def _finish(model: TrainedModel) -> TrainedModel:
    model.encoder.eval()
    if model.head is not None:
        model.head.eval()
    # A plain attribute, not a sub-module: v2 transforms are nn.Modules, and registering one
    # would change the encoder's modules(), train()/eval() flags and repr.
    object.__setattr__(model.encoder, "transform", model.transform)
    return model


# ---------------------------------------------------------------------------- loading


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
    return load_trained(path, map_location=map_location).encoder



def find_export(path: str | Path) -> Path | None:
    """The exported folder ``path`` names (the folder, its JSON or a weights file in it), or
    None when ``path`` is not one (a run directory or checkpoint file)."""
    path = Path(path)
    if path.is_file() and (path.name == META_FILE or path.suffix == ".safetensors"):
        return path.parent
    if path.is_dir() and ((path / META_FILE).exists() or any(path.glob("*.safetensors"))):
        return path
    return None


def read_export_meta(folder: str | Path) -> dict[str, Any]:
    """The checked ``varcon_encoder.json`` of an exported folder (``CheckpointError`` when it
    is missing, damaged, of another format or of a newer format version)."""
    folder = Path(folder)
    path = folder / META_FILE
    if not path.is_file():
        weights = shorten(sorted(p.name for p in folder.glob("*.safetensors")))
        raise CheckpointError(
            f"{folder} holds {weights or 'no weights'} but no {META_FILE}, which says which "
            "architecture the weights belong to and how to preprocess images; copy the JSON "
            "written with them by `varcon export` into the folder, or export the checkpoint "
            "again"
        )
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"cannot read {path}: {exc}; export the checkpoint again") from exc
    if not isinstance(meta, dict) or meta.get("format") != EXPORT_FORMAT:
        raise CheckpointError(
            f"{path} is not a varcon encoder description (its 'format' is not "
            f"{EXPORT_FORMAT!r}); export the checkpoint again with `varcon export`"
        )
    version = meta.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise CheckpointError(f"{path}: 'format_version' must be a positive integer, got "
                              f"{version!r}; export the checkpoint again")
    if version > EXPORT_FORMAT_VERSION:
        raise CheckpointError(
            f"{path} was written by a newer varcon (export format version {version}; this "
            f"varcon reads up to {EXPORT_FORMAT_VERSION}): upgrade varcon "
            "(pip install -U varcon)"
        )
    kinds = {"architecture": str, "arguments": dict, "method": str, "image_size": int,
             "in_channels": int, "mean": list, "std": list, "head": dict, "weights": dict}
    for key, kind in kinds.items():
        if not isinstance(meta.get(key), kind):
            raise CheckpointError(f"{path}: entry {key!r} is missing or not a "
                                  f"{kind.__name__}; the file is damaged: export again")
    return meta


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not path.is_file():
        raise CheckpointError(f"{path} is missing: {META_FILE} names it; copy it back from "
                              "the export, or export the checkpoint again")
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"cannot read {path} as safetensors ({exc}); the file is "
                              "truncated or damaged: export the checkpoint again") from exc


def _load_into(module: nn.Module, tensors: Mapping[str, torch.Tensor], path: Path,
               what: str) -> None:
    """``module.load_state_dict(tensors)`` with an error naming the first mismatching key."""
    own = module.state_dict()
    for key, value in own.items():
        if key in tensors and tuple(tensors[key].shape) != tuple(value.shape):
            raise CheckpointError(
                f"{path} does not fit {what}: first mismatching key {key!r} has shape "
                f"{list(tensors[key].shape)} in the file but {list(value.shape)} in the "
                f"architecture; the weights and {META_FILE} come from different exports "
                "(or the JSON was edited): export the checkpoint again"
            )
    missing = [k for k in own if k not in tensors]
    unexpected = [k for k in tensors if k not in own]
    if missing or unexpected:
        parts = ([f"{len(missing)} key(s) missing, first {missing[0]!r}"] if missing else []) + (
            [f"{len(unexpected)} unexpected key(s), first {unexpected[0]!r}"]
            if unexpected else [])
        raise CheckpointError(f"{path} does not fit {what}: {'; '.join(parts)}; export the "
                              "checkpoint again")
    with torch.no_grad():
        module.load_state_dict(dict(tensors), strict=True)


def _load_export(folder: Path, map_location: str | torch.device) -> TrainedModel:
    meta = read_export_meta(folder)
    arch, arguments, head_info = meta["architecture"], dict(meta["arguments"]), meta["head"]
    what = f"{arch} {arguments} (from {META_FILE})"
    try:
        encoder = create_model(arch, **arguments)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{folder}: cannot build {what}: {exc}") from exc
    weights = meta["weights"]
    file = folder / str(weights.get("encoder") or ENCODER_FILE)
    _load_into(encoder, _read_weights(file), file, what)
    head = None
    if weights.get("head"):
        try:
            head = build_head(meta["method"], cast(int, encoder.out_dim),
                              num_classes=head_info["num_classes"],
                              head_dim=head_info["head_dim"],
                              head_hidden=head_info.get("head_hidden"))
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{folder}: cannot build the head {head_info}: {exc}") from exc
        file = folder / str(weights["head"])
        _load_into(head, _read_weights(file), file, f"the {meta['method']} head {head_info}")
    spec = network_spec(
        meta["method"], arch, num_classes=int(head_info.get("num_classes") or 1),
        in_channels=meta["in_channels"], image_size=meta["image_size"],
        head_dim=int(head_info.get("head_dim") or 128), head_hidden=head_info.get("head_hidden"),
        encoder_kwargs={k: v for k, v in arguments.items() if k not in _COMMON_ARGUMENTS},
        mean=meta["mean"], std=meta["std"],
    )
    transform = preprocessing(meta["image_size"], meta["mean"], meta["std"],
                              meta["in_channels"])
    source = dict(meta.get("source") or {})
    source["export"] = str(folder)
    encoder = encoder.to(map_location)
    head = head.to(map_location) if head is not None else None
    return _finish(TrainedModel(encoder, head, spec, meta.get("config"), source, transform,
                                origin=str(folder)))


def load_trained(path: str | Path, *, map_location: str | torch.device = "cpu"
                 ) -> TrainedModel:
    """Rebuild a trained encoder (and head) from a run directory, a checkpoint file or an
    exported folder, in eval mode, with ``encoder.transform`` (see :func:`preprocessing`).

    Only tensors and plain data are read (safetensors, or ``torch.load(...,
    weights_only=True)``); optimizer state is dropped.
    """
    if not Path(path).exists():
        raise CheckpointError(f"checkpoint not found: {path}; pass a run directory, a "
                              "checkpoint file or a folder written by `varcon export`")
    folder = find_export(path)
    if folder is not None:
        return _load_export(folder, map_location)
    file = find_checkpoint(path)
    net, state = load_network(file, map_location=map_location)
    spec = dict(state["network"])
    config = state.get("config") if isinstance(state.get("config"), dict) else None
    spec["mean"], spec["std"] = _normalisation(spec, config)
    data = dict((config or {}).get("data") or {})
    source = {"checkpoint": str(file.resolve()), "epoch": state.get("epoch"),
              "run": (config or {}).get("name"), "dataset": data.get("dataset"),
              "root": data.get("root")}
    transform = preprocessing(spec["image_size"], spec["mean"], spec["std"],
                              spec["in_channels"])
    return _finish(TrainedModel(net.encoder, net.head, spec, config, source, transform,
                                origin=str(file)))
