"""``varcon export``: write a trained encoder as a folder another program can use.

The folder's layout (``varcon_encoder.json``, ``encoder.safetensors``, ``head.safetensors``
with ``--head``, ``torchvision_<arch>.pth`` with ``--format torchvision``) is described
where it is read back, :mod:`varcon.runtime.checkpoint.trained` (:func:`varcon.load_encoder`).

This module only writes; everything that reads trained models is in
:mod:`varcon.runtime.checkpoint`.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from varcon.runtime.checkpoint import CheckpointError, eval_dir_of, load_trained
from varcon.runtime.checkpoint.trained import (
    ENCODER_FILE,
    EXPORT_FORMAT,
    EXPORT_FORMAT_VERSION,
    HEAD_FILE,
    META_FILE,
    eval_resize,
)

from .card import CARD_FILE, card_is_ours, card_sha256, eval_results, model_card

__all__ = ["EXPORT_FORMATS", "export_encoder", "torchvision_state_dict"]

EXPORT_FORMATS = ("varcon", "torchvision")


# ---------------------------------------------------------------------------- torchvision


def torchvision_state_dict(encoder: nn.Module, architecture: str, arguments: Mapping[str, Any]
                           ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The encoder's weights for ``torchvision.models.<architecture>()`` and a report.

    Keys are shared (:class:`~varcon.models.ResNetEncoder` keeps torchvision's names);
    entries whose shape differs from torchvision's (the CIFAR stem's 3x3 ``conv1``, a stem
    for other than 3 channels) are left out, so ``load_state_dict(sd, strict=False)`` on the
    torchvision model reports exactly those and ``fc.weight``/``fc.bias`` as missing and
    nothing as unexpected (checked here, on a torchvision model). Other architectures, and
    ResNets of another ``width`` (no layer would fit), raise ``CheckpointError``.
    """
    from varcon.models.resnet import _BUILDERS

    if architecture not in _BUILDERS:
        raise CheckpointError(
            f"--format torchvision is for the ResNet encoders ({', '.join(_BUILDERS)}); "
            f"{architecture!r} has no torchvision counterpart: export it in the varcon format "
            "(the default) and load it with varcon.load_encoder"
        )
    width = arguments.get("width", 64)
    if width != 64:
        raise CheckpointError(
            f"--format torchvision: this {architecture} has width {width}, torchvision's has "
            "64, so none of its layers fit torchvision's model; export it in the varcon format "
            "(the default) and load it with varcon.load_encoder"
        )
    reference = _BUILDERS[architecture](weights=None)
    shapes = {k: tuple(v.shape) for k, v in reference.state_dict().items()}
    kept: dict[str, torch.Tensor] = {}
    left_out: dict[str, str] = {}
    for key, value in encoder.state_dict().items():
        if key not in shapes:
            left_out[key] = f"torchvision.models.{architecture} has no {key!r}"
        elif shapes[key] != tuple(value.shape):
            left_out[key] = (f"shape {list(value.shape)} here, {list(shapes[key])} in "
                             f"torchvision.models.{architecture}")
        else:
            kept[key] = value.detach().to("cpu").contiguous().clone()
    result = reference.load_state_dict(kept, strict=False)
    cifar_stem = isinstance(getattr(encoder, "maxpool", None), nn.Identity)
    note = ("the pooled features of torchvision's model with fc = nn.Identity() equal the "
            "encoder's output")
    if cifar_stem:
        note = ("CIFAR stem: before loading, set model.conv1 = nn.Conv2d("
                f"{arguments.get('in_channels', 3)}, 64, 3, 1, 1, bias=False) and "
                "model.maxpool = nn.Identity(), and copy conv1.weight from "
                f"{ENCODER_FILE}; then, with fc = nn.Identity(), the outputs match")
    elif left_out:
        note = (f"conv1 takes {arguments.get('in_channels')} channel(s): replace model.conv1 "
                f"and copy its weight from {ENCODER_FILE}")
    report = {
        "file": f"torchvision_{architecture}.pth",
        "model": f"torchvision.models.{architecture}",
        "stem": "cifar" if cifar_stem else "imagenet",
        "missing_keys": list(result.missing_keys),
        "unexpected_keys": list(result.unexpected_keys),
        "left_out": left_out,
        "note": note,
    }
    return kept, report


# ---------------------------------------------------------------------------- writing


def _check_output(output: Path, overwrite: bool) -> None:
    if output.exists() and not output.is_dir():
        raise ValueError(f"--output {output} is a file; give the path of a folder for the "
                         "export")
    if output.is_dir() and any(output.iterdir()):
        if not overwrite:
            raise ValueError(f"{output} exists; pass --overwrite to replace it, or choose "
                             "another --output")
        if not (output / META_FILE).is_file():
            raise ValueError(
                f"{output} is not a varcon export (it has no {META_FILE}); --overwrite only "
                "replaces an earlier export: choose another --output"
            )
        if not card_is_ours(output, META_FILE):
            raise ValueError(
                f"{output / CARD_FILE} was not written by varcon export (or was edited since); "
                "--overwrite would replace it: move it out of the folder, or choose another "
                "--output"
            )


def _replace_folder(output: Path, write: Callable[[Path], None]) -> None:
    """Write into a temporary folder beside ``output``, then put it in place by renames: an
    earlier export stays whole until the new one is complete (and comes back on failure)."""
    parent = output.parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = parent / f".{output.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        write(tmp)
        if output.is_dir() and any(output.iterdir()):
            old = parent / f".{output.name}.old-{os.getpid()}-{time.time_ns()}"
            os.replace(output, old)
            try:
                os.replace(tmp, output)
            except BaseException:
                os.replace(old, output)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            if output.is_dir():
                output.rmdir()
            os.replace(tmp, output)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _eval_dir(checkpoint: str | Path, source: Mapping[str, Any]) -> Path:
    """The evaluation folder of what is exported: the run's ``eval/`` for a run directory or
    checkpoint file; for an earlier export, that of the checkpoint it came from."""
    here = eval_dir_of(checkpoint)
    if not here.is_dir() and source.get("export") and source.get("checkpoint"):
        return eval_dir_of(str(source["checkpoint"]))
    return here


def _tensors(module: nn.Module) -> dict[str, torch.Tensor]:
    # Cloned: safetensors refuses tensors sharing storage (tied weights), and wants them
    # contiguous on the CPU.
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in module.state_dict().items()}


def export_encoder(
    checkpoint: str | Path,
    output: str | Path,
    *,
    head: bool = False,
    format: str = "varcon",
    overwrite: bool = False,
) -> dict[str, Any]:
    """Export the encoder of ``checkpoint`` (run directory, checkpoint file or exported
    folder) to the folder ``output``: ``encoder.safetensors`` + ``varcon_encoder.json``,
    ``head.safetensors`` with ``head``, and with ``format="torchvision"`` also
    ``torchvision_<arch>.pth`` (:func:`torchvision_state_dict`).

    An existing non-empty ``output`` is refused unless ``overwrite`` (and then only when it
    is an earlier export, replaced whole). Returns ``{"output", "files", "meta"}``.
    """
    output = Path(output)
    if format not in EXPORT_FORMATS:
        raise ValueError(f"unknown export format {format!r}; choose one of "
                         f"{', '.join(EXPORT_FORMATS)}")
    _check_output(output, overwrite)
    model = load_trained(checkpoint)
    if head and model.head is None:
        model.network()  # raises: an export without its head
    arch, arguments = model.architecture, model.arguments
    tv_state, tv_report = (torchvision_state_dict(model.encoder, arch, arguments)
                           if format == "torchvision" else (None, None))
    spec = model.spec
    from varcon import __version__

    meta: dict[str, Any] = {
        "format": EXPORT_FORMAT,
        "format_version": EXPORT_FORMAT_VERSION,
        "varcon_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "architecture": arch,
        "arguments": arguments,
        "out_dim": int(cast(int, model.encoder.out_dim)),
        "method": spec["method"],
        "image_size": int(spec["image_size"]),
        "in_channels": int(spec["in_channels"]),
        "mean": list(spec["mean"]),
        "std": list(spec["std"]),
        "preprocessing": {
            "channels": int(spec["in_channels"]),
            "resize_shorter_side": eval_resize(spec["image_size"]),
            "center_crop": int(spec["image_size"]),
            "scale": "uint8 / 255",
            "normalize": {"mean": list(spec["mean"]), "std": list(spec["std"])},
        },
        "weights": {"encoder": ENCODER_FILE, "head": HEAD_FILE if head else None},
        "head": {"method": spec["method"],
                 "kind": "linear" if spec["method"] == "ce" else "projection",
                 "num_classes": int(spec["num_classes"]), "head_dim": int(spec["head_dim"]),
                 "head_hidden": spec.get("head_hidden")},
        "source": {k: v for k, v in model.source.items() if k != "export"},
        "config": model.config,
    }
    if tv_report is not None:
        meta["torchvision"] = tv_report
    results, left_out = eval_results(_eval_dir(checkpoint, model.source),
                                     model.source.get("checkpoint"),
                                     str(model.source.get("dataset") or "?"))
    files = [ENCODER_FILE, META_FILE] + ([HEAD_FILE] if head else [])
    card = model_card(json.loads(json.dumps(meta, default=str)), name=output.name,
                      parameters=sum(p.numel() for p in model.encoder.parameters()),
                      results=results, left_out=left_out, files=files)
    meta["card"] = {"file": CARD_FILE, "sha256": card_sha256(card),
                    "evaluations": len(results)}
    text = json.dumps(meta, indent=2, default=str) + "\n"

    def write(folder: Path) -> None:
        from safetensors.torch import save_file

        tag = {"format": EXPORT_FORMAT, "format_version": str(EXPORT_FORMAT_VERSION)}
        save_file(_tensors(model.encoder), str(folder / ENCODER_FILE),
                  metadata={**tag, "part": "encoder", "architecture": arch})
        if head:
            assert model.head is not None
            save_file(_tensors(model.head), str(folder / HEAD_FILE),
                      metadata={**tag, "part": "head", "method": spec["method"]})
        if tv_state is not None and tv_report is not None:
            torch.save(tv_state, folder / tv_report["file"])
        (folder / META_FILE).write_text(text, encoding="utf-8")
        (folder / CARD_FILE).write_bytes(card.encode("utf-8"))

    _replace_folder(output, write)
    return {"output": str(output), "files": sorted(p.name for p in output.iterdir()),
            "meta": meta}
