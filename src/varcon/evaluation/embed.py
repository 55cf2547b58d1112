"""Embeddings of every image of a folder or a dataset, written to ``.npz`` or Parquet.

``varcon embed --checkpoint CKPT --input DIR_OR_DATASET --output FILE`` runs
:func:`embed_images`. ``CKPT`` is a run directory, a checkpoint file or an exported folder
(:func:`varcon.models.load_trained`); images go through the encoder's evaluation
preprocessing (``encoder.transform``: channels, resize, centre crop, normalisation recorded
with the network) and :func:`~varcon.evaluation.features.extract_features`, in batches of
``eval.batch_size`` loaded by ``data.num_workers`` DataLoader workers.

``--input`` is

* a folder of images: with class subfolders (``DIR/<class>/...``, labels from the sorted
  folder names) or flat (``DIR/*.png``, no labels); or
* ``NAME[:SPLIT]``: a split (``train`` or ``test``, default ``test``) of a dataset by config,
  ``NAME`` one of ``dataset`` (the checkpoint's own, changed by ``data.*`` overrides),
  ``digits``, ``cifar10``, ``cifar100``, ``imagefolder`` (with ``data.root=...``).

Under ``torchrun`` rank r encodes items r, r + W, r + 2W, ...; the shards are gathered and
rank 0 writes the file, identical to one process's.

Unreadable image files stop the command, or with ``data.bad_files=skip`` are left out,
counted and listed in the output. The output is written to a temporary file in the same
folder and renamed into place, so it is never half-written; an existing file is replaced only
with ``overwrite``.

Output contents (rows in input order; ``index`` is the position in the input listing):

* ``.npz``: ``embeddings`` float32 ``[N, D]``, ``index`` int64 ``[N]``, ``paths`` str ``[N]``
  (image files only), ``labels`` int64 ``[N]`` and ``class_names`` str ``[K]`` (when labels
  are known), ``skipped`` str ``[M]``, ``meta`` (a JSON string).
* ``.parquet``: columns ``index``, ``path`` (files), ``label`` and ``class_name`` (when
  known), ``embedding`` (fixed-size list of D float32); the JSON ``meta`` (with
  ``class_names`` and ``skipped``) is the schema metadata under the key ``varcon``.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import Dataset

from varcon._atomic import atomic_path
from varcon._text import shorten
from varcon.data import decode_image_file
from varcon.data.datasets import PathArray
from varcon.data.subsets import item_paths
from varcon.runtime.checkpoint import load_trained
from varcon.runtime.config import Config, apply_overrides, config_from_dict
from varcon.runtime.data import build_split
from varcon.runtime.distributed import (
    DistContext,
    all_reduce_sum,
    broadcast_object,
    gather_strided,
    setup_distributed,
    teardown,
)

from .session import encode_shard

__all__ = ["DATASET_INPUTS", "EMBED_FORMAT", "EMBED_FORMAT_VERSION", "OUTPUT_SUFFIXES",
           "ParquetNotInstalledError", "embed_images", "read_embeddings"]

EMBED_FORMAT = "varcon-embeddings"
EMBED_FORMAT_VERSION = 1
OUTPUT_SUFFIXES = (".npz", ".parquet")
DATASET_INPUTS = ("dataset", "digits", "cifar10", "cifar100", "imagefolder")
_SPLITS = ("train", "test")


class ParquetNotInstalledError(ImportError):
    """A ``.parquet`` output without pyarrow installed."""


def _require_pyarrow() -> None:
    try:
        import pyarrow.parquet  # noqa: F401
    except ImportError as exc:
        raise ParquetNotInstalledError(
            'writing Parquet needs pyarrow, which is not installed: pip install "varcon[parquet]"'
            " (or write .npz)"
        ) from exc


@dataclass
class _Input:
    """What to embed: image files (``paths``) or a dataset of uint8 images (``dataset``)."""

    label: str  # e.g. "cifar10 test" or the folder, for messages and the progress bar
    kind: str  # "folder" | "dataset"
    size: int
    paths: list[str] | None  # the image file of each item, when there are files
    labels: np.ndarray | None  # int64 [size], None when unknown
    class_names: list[str] | None
    dataset: Any = None  # yields (uint8 image [C, H, W], label); None for a folder
    split: str | None = None
    name: str | None = None

    def describe(self, i: int) -> str:
        return self.paths[i] if self.paths is not None else f"{self.label} item {i}"


class _Items(Dataset):
    """Item ``i``: ``(transform(image) or None, i, error or None)``; a file that cannot be
    decoded comes back as its error message, so the caller applies ``data.bad_files``."""

    def __init__(self, source: _Input, transform: Any) -> None:
        # a PathArray, not the list: workers read it without copying its pages (datasets)
        self.paths = (PathArray(source.paths) if source.dataset is None
                      and source.paths is not None else None)
        self.dataset = source.dataset
        self.size = source.size
        self.transform = transform

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, i: int) -> tuple[torch.Tensor | None, int, str | None]:
        try:
            if self.dataset is None:
                assert self.paths is not None
                image = decode_image_file(self.paths[i])
            else:
                image = self.dataset[i][0]
        except (OSError, RuntimeError, ValueError) as exc:
            return None, i, f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        return self.transform(image), i, None


def _collate(items: list[tuple[torch.Tensor | None, int, str | None]]
             ) -> tuple[torch.Tensor, torch.Tensor, list[tuple[int, str]]]:
    good = [(x, i) for x, i, err in items if x is not None and err is None]
    bad = [(i, err) for _, i, err in items if err is not None]
    images = torch.stack([x for x, _ in good]) if good else torch.zeros(0)
    return images, torch.tensor([i for _, i in good], dtype=torch.long), bad


# ------------------------------------------------------------------------------- input


def _scan_folder(root: Path) -> _Input:
    """Class subfolders give labels (sorted names, as torchvision's ImageFolder); a folder
    of image files alone gives none."""
    from torchvision.datasets.folder import IMG_EXTENSIONS, has_file_allowed_extension, make_dataset

    root = root.resolve()
    entries = sorted(os.scandir(root), key=lambda e: e.name)
    files = [e.path for e in entries if e.is_file() and not e.name.startswith(".")
             and has_file_allowed_extension(e.name, IMG_EXTENSIONS)]
    dirs = [e.name for e in entries if e.is_dir() and not e.name.startswith(".")]
    samples = make_dataset(str(root), {d: k for k, d in enumerate(dirs)},
                           extensions=IMG_EXTENSIONS, allow_empty=True) if dirs else []
    if samples:
        if files:
            raise ValueError(
                f"--input {root} holds both image files ({len(files)}, e.g. "
                f"{Path(files[0]).name}) and class folders ({shorten(dirs, 5)}); move the "
                "loose files into a class folder, or point --input at a folder of one kind"
            )
        used = sorted({dirs[t] for _, t in samples})  # class folders with images
        if set(used) <= {"train", "val", "test"}:
            raise ValueError(
                f"--input {root} looks like an ImageFolder dataset root (its class folders "
                f"would be {', '.join(used)}); embed one split: --input {root / used[-1]}, or "
                f"--input imagefolder:test data.root={root}"
            )
        # Labels index the folders that hold images, in sorted order.
        remap = {dirs.index(d): k for k, d in enumerate(used)}
        return _Input(label=str(root), kind="folder", size=len(samples),
                      paths=[p for p, _ in samples],
                      labels=np.array([remap[t] for _, t in samples], dtype=np.int64),
                      class_names=used)
    if not files:
        raise ValueError(f"--input {root} holds no image file (extensions "
                         f"{', '.join(IMG_EXTENSIONS)}) and no class folder with images")
    return _Input(label=str(root), kind="folder", size=len(files), paths=files, labels=None,
                  class_names=None)


def _parse_dataset_input(text: str) -> tuple[str, str] | None:
    name, _, split = text.partition(":")
    if name not in DATASET_INPUTS:
        return None
    split = split or "test"
    if split not in _SPLITS:
        raise ValueError(f"--input {text}: unknown split {split!r}; write {name}:train or "
                         f"{name}:test")
    return name, split


def _config(base: dict[str, Any] | None, name: str | None, overrides: list[str]) -> Config:
    """The run's config with ``overrides``; naming another dataset starts its ``data``
    section afresh (the run's class subsets or root do not apply to other data)."""
    data = dict(base or {})
    data_section = dict(data.get("data") or {})
    if name is not None and name != "dataset" and name != data_section.get("dataset"):
        keep = {k: data_section[k] for k in ("num_workers", "bad_files", "cache", "cache_dir")
                if k in data_section}
        data["data"] = {**keep, "dataset": name}
    return config_from_dict(apply_overrides(data, overrides))


def _dataset_input(cfg: Config, name: str, split: str, ctx: DistContext | None = None
                   ) -> _Input:
    dataset = build_split(cfg, split, ctx)  # under torchrun rank 0 writes any decoded cache
    info = dataset.info
    targets = getattr(dataset, "targets", None)
    labels = (torch.as_tensor(targets).reshape(-1).numpy().astype(np.int64)
              if targets is not None else None)
    label = f"{cfg.data.dataset} {split}"
    if cfg.data.root and cfg.data.dataset == "imagefolder":
        label = f"imagefolder {Path(cfg.data.root).name} {split}"
    return _Input(label=label, kind="dataset", size=len(dataset), paths=item_paths(dataset),
                  labels=labels, class_names=list(info.class_names), dataset=dataset,
                  split=split, name=cfg.data.dataset)


# ------------------------------------------------------------------------------ output


def _check_output(output: Path, overwrite: bool) -> str:
    suffix = output.suffix.lower()
    if suffix not in OUTPUT_SUFFIXES:
        raise ValueError(f"unknown output extension {suffix or '(none)'!r} of {output}; "
                         "write embeddings to a .npz (NumPy) or .parquet (Apache Parquet) file")
    if output.is_dir():
        raise ValueError(f"--output {output} is a folder; give a file path ending in {suffix}")
    if output.exists() and not overwrite:
        raise ValueError(f"{output} exists; pass --overwrite to replace it, or choose another "
                         "--output")
    if suffix == ".parquet":
        _require_pyarrow()
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"cannot create the folder {output.parent} ({exc.strerror}); choose "
                         "another --output") from exc
    return suffix


def _write_npz(path: Path, columns: dict[str, Any], meta: dict[str, Any]) -> None:
    arrays: dict[str, np.ndarray] = {"embeddings": columns["embedding"],
                                     "index": columns["index"]}
    if "path" in columns:
        arrays["paths"] = np.array(columns["path"], dtype=np.str_)
    if "label" in columns:
        arrays["labels"] = columns["label"]
        arrays["class_names"] = np.array(meta["class_names"], dtype=np.str_)
    arrays["skipped"] = np.array(meta["skipped"], dtype=np.str_)
    arrays["meta"] = np.array(json.dumps(meta, default=str))
    with open(path, "wb") as f:
        np.savez(f, **arrays)  # type: ignore[arg-type]


def _write_parquet(path: Path, columns: dict[str, Any], meta: dict[str, Any]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    emb = columns["embedding"]
    table = {"index": pa.array(columns["index"], type=pa.int64())}
    if "path" in columns:
        table["path"] = pa.array(columns["path"], type=pa.string())
    if "label" in columns:
        table["label"] = pa.array(columns["label"], type=pa.int64())
        table["class_name"] = pa.array([meta["class_names"][int(y)] for y in columns["label"]],
                                       type=pa.string())
    table["embedding"] = pa.FixedSizeListArray.from_arrays(
        pa.array(emb.reshape(-1), type=pa.float32()), emb.shape[1])
    out = pa.table(table).replace_schema_metadata({"varcon": json.dumps(meta, default=str)})
    pq.write_table(out, str(path))


def read_embeddings(path: str | Path) -> dict[str, Any]:
    """Read an embeddings file back: ``{"embeddings" [N, D], "index", "paths" | None,
    "labels" | None, "class_names" | None, "skipped", "meta"}`` (NumPy arrays / lists)."""
    path = Path(path)
    if path.suffix.lower() == ".npz":
        with np.load(path) as npz:
            meta = json.loads(str(npz["meta"]))
            return {"embeddings": npz["embeddings"], "index": npz["index"],
                    "paths": npz["paths"].tolist() if "paths" in npz else None,
                    "labels": npz["labels"] if "labels" in npz else None,
                    "class_names": npz["class_names"].tolist() if "class_names" in npz
                    else None,
                    "skipped": npz["skipped"].tolist(), "meta": meta}
    if path.suffix.lower() == ".parquet":
        _require_pyarrow()
        import pyarrow.parquet as pq

        table = pq.read_table(str(path))
        meta = json.loads(table.schema.metadata[b"varcon"])
        emb = table.column("embedding").combine_chunks()
        dim = emb.type.list_size
        names = table.column_names
        return {"embeddings": emb.flatten().to_numpy().reshape(-1, dim),
                "index": table.column("index").to_numpy(),
                "paths": table.column("path").to_pylist() if "path" in names else None,
                "labels": table.column("label").to_numpy() if "label" in names else None,
                "class_names": meta.get("class_names"), "skipped": meta["skipped"],
                "meta": meta}
    raise ValueError(f"unknown embeddings file {path}: expected .npz or .parquet")


# -------------------------------------------------------------------------------- embed


def embed_images(
    checkpoint: str | Path,
    input: str | Path,
    output: str | Path,
    *,
    features: str = "encoder",
    overrides: list[str] | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Embed every image of ``input`` with the encoder (``features="encoder"``: ``[N,
    out_dim]``) or the whole network (``"head"``: ``[N, head_dim]`` or logits) of
    ``checkpoint``, and write them to ``output`` (``.npz`` or ``.parquet``).

    ``overrides`` (``key=value``) apply to the checkpoint's config: ``data.*`` to choose a
    dataset, ``data.bad_files``, ``data.num_workers``, ``eval.batch_size``, ``train.device``,
    ``train.amp``, ``train.progress``. Every check on the arguments runs before any image is
    encoded. Returns ``{"output", "n", "dim", "features", "input", "labelled",
    "class_names", "skipped", "seconds"}``.
    """
    start = time.perf_counter()
    output = Path(output)
    suffix = _check_output(output, overwrite)
    if features not in ("encoder", "head"):
        raise ValueError(f"features must be 'encoder' or 'head', got {features!r}")
    text = str(input)
    folder = Path(text).expanduser()
    parsed = None if folder.is_dir() else _parse_dataset_input(text)
    if not folder.is_dir() and parsed is None:
        raise ValueError(
            f"--input {text}: no such folder, and not a dataset; give a folder of images "
            f"(class subfolders give labels), or NAME[:SPLIT] with NAME one of "
            f"{', '.join(DATASET_INPUTS)} ('dataset' is the checkpoint's own; data.* "
            "overrides change it) and SPLIT train or test"
        )
    source = _scan_folder(folder) if parsed is None else None

    model = load_trained(checkpoint)
    if features == "head":
        model.network()  # raises for an export without its head
    cfg = _config(model.config, parsed[0] if parsed else None, list(overrides or []))
    ctx = setup_distributed(cfg.train.device)
    try:
        if source is None:
            assert parsed is not None
            source = _dataset_input(cfg, cfg.data.dataset, parsed[1], ctx)
        if source.size == 0:
            raise ValueError(f"{source.label} holds no image")
        feats, index, skipped = _encode_shards(model, features, source, cfg, ctx, progress)
        result = (_write(output, suffix, model, features, text, source, feats, index,
                         skipped, start) if ctx.is_main else None)
        summary = broadcast_object(ctx, result)  # rank 0's summary, once its file is written
        assert isinstance(summary, dict)
        return summary
    finally:
        teardown(ctx)


def _encode_shards(model: Any, features: str, source: _Input, cfg: Config, ctx: DistContext,
                   progress: bool) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Every readable image's features ``[N, D]`` with its input position ``[N]`` (in input
    order) and the unreadable ones: on rank 0; the other ranks get no rows (only the skipped
    list).

    The session's sharded encode (:func:`~varcon.evaluation.session.encode_shard`): under
    ``torchrun`` rank r encodes items r, r + W, r + 2W, ... and the shards are gathered a
    chunk at a time (:func:`~varcon.runtime.distributed.gather_strided`); a bad file
    (``data.bad_files=error``) found by any rank stops every rank with its message, so no rank
    waits on one that has failed.
    """
    device = ctx.device
    encoder = model.encoder.to(device)
    fn = encoder if features == "encoder" else model.network().to(device)
    skipped: list[int] = []  # input positions

    def readable(loader: Any) -> Any:
        for images, index, bad in loader:
            for i, message in bad:
                if cfg.data.bad_files == "error":
                    raise _BadImage(
                        f"cannot read image {source.describe(i)} ({message}); remove or "
                        "replace it, or pass data.bad_files=skip to leave unreadable "
                        "files out (they are counted and listed in the output); nothing "
                        "was written"
                    )
                skipped.append(int(i))
            if len(index):
                yield images, index

    feats = torch.zeros(0, 0)
    index = torch.zeros(0, dtype=torch.long)
    failure: str | None = None
    try:
        feats, index = encode_shard(fn, _Items(source, model.transform), cfg, ctx,
                                    collate_fn=_collate, batches=readable,
                                    desc=f"embed {source.label}", progress=progress)
    except _BadImage as exc:
        failure = str(exc)
    if ctx.distributed:
        failures: list[str | None] = [None] * ctx.world_size
        dist.all_gather_object(failures, failure)
        failure = next((f for f in failures if f is not None), None)
        if failure is None:
            shards: list[Any] = [None] * ctx.world_size
            dist.all_gather_object(shards, skipped)
            skipped = sorted(i for shard in shards for i in shard)
    if failure is not None:
        raise ValueError(failure)
    total = all_reduce_sum(ctx, torch.tensor([len(index)], device=ctx.device))
    if not int(total.item()):
        raise ValueError(f"no readable image in {source.label} ({len(skipped)} skipped); "
                         "nothing was written")
    # This rank's strided rows, an unreadable item's left as zeros with position -1, gathered
    # into input order on rank 0, where the unreadable ones are dropped.
    rows = len(range(ctx.rank, source.size, ctx.world_size))
    full, full_index = feats, index
    if len(index) < rows:
        slots = (index - ctx.rank) // ctx.world_size
        full = torch.zeros(rows, feats.shape[1], dtype=feats.dtype)
        full_index = torch.full((rows,), -1, dtype=torch.long)
        full[slots], full_index[slots] = feats, index
    full, full_index = gather_strided(ctx, [full, full_index], source.size, everywhere=False)
    kept = full_index >= 0
    return full[kept], full_index[kept], [source.describe(i) for i in skipped]


class _BadImage(ValueError):
    """An unreadable image under ``data.bad_files=error``."""


def _write(output: Path, suffix: str, model: Any, features: str, text: str, source: _Input,
           feats: torch.Tensor, index: torch.Tensor, skipped: list[str], start: float
           ) -> dict[str, Any]:
    if skipped:
        warnings.warn(f"embed: skipped {len(skipped)} unreadable image file(s) of "
                      f"{source.label} (data.bad_files=skip), e.g. {skipped[0]}", stacklevel=2)

    rows = index.numpy()
    columns: dict[str, Any] = {"embedding": feats.numpy().astype(np.float32, copy=False),
                               "index": rows.astype(np.int64)}
    if source.paths is not None:
        columns["path"] = [source.paths[int(i)] for i in rows]
    if source.labels is not None:
        columns["label"] = source.labels[rows]
    spec = model.spec
    meta = {
        "format": EMBED_FORMAT, "format_version": EMBED_FORMAT_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "checkpoint": model.origin, "source": model.source,
        "architecture": spec["encoder"], "method": spec["method"], "features": features,
        "dim": int(feats.shape[1]), "n": int(feats.shape[0]),
        "input": text, "input_kind": source.kind, "dataset": source.name,
        "split": source.split, "image_size": int(spec["image_size"]),
        "mean": list(spec["mean"]), "std": list(spec["std"]),
        "class_names": source.class_names if source.labels is not None else None,
        "skipped": skipped,
    }
    with atomic_path(output) as tmp:
        (_write_npz if suffix == ".npz" else _write_parquet)(tmp, columns, meta)
    return {"output": str(output), "n": int(feats.shape[0]), "dim": int(feats.shape[1]),
            "features": features, "input": source.label, "labelled": source.labels is not None,
            "class_names": meta["class_names"], "skipped": skipped,
            "seconds": time.perf_counter() - start}
