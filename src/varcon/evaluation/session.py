"""An evaluation session: one encoder, its data, and features extracted once per split.

Every protocol (linear probe, kNN, clustering, few-shot, transfer, robustness) reads its
features from the session, so a split is encoded once per encoder and feature kind however
many protocols run, and with ``eval.cache_features=true`` once per checkpoint: the float16
features go to ``<output>/features/`` keyed by the checkpoint file and the data settings, and
a later command skips the encoder.

A session is built from a checkpoint (``EvalSession.from_checkpoint``: the ``varcon knn`` /
``cluster`` / ... commands) or from a network in memory (``EvalSession.from_network``: the
end of ``varcon pretrain``). It never imports the training loop.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from varcon._atomic import atomic_path
from varcon.data import TransformedDataset, build_transform
from varcon.models import Network
from varcon.runtime.backend import autocast_dtype
from varcon.runtime.checkpoint import CheckpointError, eval_dir_of, find_checkpoint, load_network
from varcon.runtime.config import Config, apply_overrides, config_from_dict, fit_warmups
from varcon.runtime.data import RunData, build_split, build_train_data
from varcon.runtime.distributed import (
    DistContext,
    barrier,
    gather_strided,
    setup_distributed,
    teardown,
)

from .features import extract_features

__all__ = ["EvalSession", "compact_float", "dataset_label", "encode_shard", "eval_session"]

# Spec entries that define the encoder: an override may change the data, never these.
_ARCHITECTURE_KEYS = ("method", "encoder", "encoder_kwargs", "head_dim", "head_hidden")


@dataclass
class EvalSession:
    """What evaluation protocols need: config, network, data and cached features.

    ``net.encode(x)`` gives encoder features ``[N, out_dim]``; ``net(x)`` head outputs.
    ``source`` describes the data the encoder was trained on (``dataset``, ``root``);
    ``cfg.data`` the data evaluated on (they differ for transfer).
    """

    cfg: Config
    net: Network
    ctx: DistContext
    data: RunData
    out_dir: Path
    checkpoint: str
    source: dict[str, Any]
    _test_set: Any = None
    _features: dict[tuple[str, str], tuple[torch.Tensor, torch.Tensor]] = field(
        default_factory=dict)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_network(cls, cfg: Config, net: Network, data: RunData, ctx: DistContext,
                     out_dir: str | Path, checkpoint: str | Path) -> EvalSession:
        """A session for a network in memory whose training data is ``data``."""
        return cls(cfg=cfg, net=net, ctx=ctx, data=data, out_dir=Path(out_dir),
                   checkpoint=str(checkpoint), source=_source(cfg))

    @classmethod
    def from_checkpoint(cls, checkpoint: str | Path, overrides: list[str] | None,
                        output_dir: str | Path | None, ctx: DistContext) -> EvalSession:
        """Rebuild the network of ``checkpoint`` (a file or run directory) and its data.

        The checkpoint's own config is the base and ``overrides`` (evaluation settings, or
        ``data.*`` to evaluate on other data) apply on top. Overrides that change the
        architecture are refused. Inputs are normalised as in training (the spec's mean/std
        when recorded) and resized to the training image size.
        """
        path = find_checkpoint(checkpoint)
        net, state = load_network(path, map_location=ctx.device)
        base = state.get("config")
        if not isinstance(base, dict):
            raise CheckpointError(f"{path} holds no config: it was not written by varcon")
        # linear.epochs=3 alone fits a trained config's longer probe warm-up (with a note)
        merged, notes = fit_warmups(apply_overrides(base, overrides or []), overrides or [])
        cfg = config_from_dict(merged)
        if ctx.is_main:
            for note in notes:
                print(f"note: {note}", flush=True)
        spec = state["network"]
        if cfg.data.dataset == "imagefolder" and cfg.data.channels is None:
            # a tree's files decode to what the encoder reads (grayscale <-> RGB), as
            # ``encoder.transform`` and ``varcon embed`` do
            cfg.data.channels = int(spec["in_channels"])
        requested = {"method": cfg.method, "encoder": cfg.model.encoder,
                     "encoder_kwargs": dict(cfg.model.kwargs), "head_dim": cfg.model.head_dim,
                     "head_hidden": cfg.model.head_hidden}
        changed = [f"{k}: checkpoint {spec.get(k, {} if k == 'encoder_kwargs' else None)!r} "
                   f"vs overrides {requested[k]!r}" for k in _ARCHITECTURE_KEYS
                   if spec.get(k, {} if k == "encoder_kwargs" else None) != requested[k]]
        if changed:
            raise CheckpointError(
                f"the overrides change the checkpoint's network ({'; '.join(changed)}); drop "
                "them: evaluation uses the trained architecture"
            )
        data = build_train_data(cfg, ctx)
        if data.info.channels != spec["in_channels"]:
            raise ValueError(
                f"{cfg.data.dataset} images have {data.info.channels} channel(s) but the "
                f"encoder of {path} was trained on {spec['in_channels']}; evaluate it on data "
                "with the same number of channels (an imagefolder tree decodes to the "
                "encoder's unless data.channels says otherwise)"
            )
        # The encoder expects its training input size and normalisation.
        mean = tuple(spec.get("mean") or data.mean)
        std = tuple(spec.get("std") or data.std)
        data = RunData(data.dataset, data.info, int(spec["image_size"]), mean, std,
                       data.train_transform, data.pretrain_set, data.pretrain_labels)
        out = Path(output_dir) if output_dir else eval_dir_of(checkpoint)
        return cls(cfg=cfg, net=net, ctx=ctx, data=data, out_dir=out, checkpoint=str(path),
                   source=_source(config_from_dict(base)))

    # ------------------------------------------------------------------------ data
    @property
    def class_names(self) -> list[str]:
        return list(self.data.info.class_names)

    @property
    def num_classes(self) -> int:
        return int(self.data.info.num_classes)

    def test_set(self) -> Any:
        if self._test_set is None:
            self._test_set = build_split(self.cfg, "test", self.ctx)
        return self._test_set

    def split(self, name: str) -> Any:
        return self.data.dataset if name == "train" else self.test_set()

    def eval_transform(self) -> Any:
        return build_transform("eval", self.data.image_size, self.data.mean, self.data.std)

    def context(self, features: str = "encoder") -> dict[str, Any]:
        """The result-file envelope fields describing this session."""
        return {
            "checkpoint": self.checkpoint,
            "method": self.cfg.method,
            "encoder": self.cfg.model.encoder,
            "dataset": self.source["dataset"],
            "eval_dataset": dataset_label(self.cfg),
            "features": features,
            "class_names": self.class_names,
        }

    def prepare_output(self) -> Path:
        """Create the output folder (rank 0) and wait for it on every rank."""
        if self.ctx.is_main:
            try:
                self.out_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ValueError(
                    f"cannot create the output directory {self.out_dir} ({exc.strerror}); "
                    "choose another with --output-dir"
                ) from exc
        barrier(self.ctx)
        return self.out_dir

    # -------------------------------------------------------------------- features
    def encode_fn(self, kind: str) -> Any:
        if kind == "encoder":
            return self.net.encode
        if kind == "head":
            return self.net
        raise ValueError(f"features must be 'encoder' or 'head', got {kind!r}")

    def features(self, split: str, kind: str = "encoder", *, progress: bool = True
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(features float32 [N, D], labels int64 [N])`` of ``split`` on CPU, every rank.

        Extracted once per (split, kind) and kept; with several processes each rank encodes
        a strided shard and the shards are gathered back into dataset order.
        """
        key = (split, kind)
        if key in self._features:
            return self._features[key]
        cached = self._load_cached(split, kind)
        if cached is None:
            dataset = self.split(split)
            cached = self.encode_dataset(dataset, kind, desc=f"features {split}/{kind}",
                                         progress=progress)
            self._save_cached(split, kind, *cached)
        self._features[key] = cached
        return cached

    def encode_dataset(self, dataset: Any, kind: str = "encoder", *, desc: str = "features",
                       progress: bool = True, transform: Any = None
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode every image of a uint8 ``dataset``: each rank encodes its strided shard
        (:func:`encode_shard`), and the shards are gathered back into dataset order on every
        rank, a chunk at a time (:func:`~varcon.runtime.distributed.gather_strided`)."""
        feats, labels = encode_shard(self.encode_fn(kind), dataset, self.cfg, self.ctx,
                                     transform=transform or self.eval_transform(), desc=desc,
                                     progress=progress)
        if self.ctx.distributed:
            feats, labels = gather_strided(self.ctx, [feats, labels], len(dataset))
        return feats, labels

    def _cache_path(self, split: str, kind: str) -> Path:
        return self.out_dir / "features" / f"{split}_{kind}.npz"

    def _cache_key(self, split: str, kind: str) -> str:
        try:
            st = os.stat(self.checkpoint)
            ckpt = [str(Path(self.checkpoint).resolve()), st.st_size, st.st_mtime_ns]
        except OSError:
            ckpt = [self.checkpoint]
        d = self.cfg.data
        key = [ckpt, split, kind, d.dataset, d.root, d.image_size, d.classes,
               d.exclude_classes, d.per_class if split == "train" else None,
               self.cfg.seed if split == "train" and d.per_class else None,
               self.data.image_size, list(self.data.mean), list(self.data.std)]
        if d.channels not in (None, 3):  # RGB keeps the key it had before data.channels
            key.append(d.channels)
        return hashlib.sha256(json.dumps(key, default=str).encode()).hexdigest()

    def _load_cached(self, split: str, kind: str) -> tuple[torch.Tensor, torch.Tensor] | None:
        if not self.cfg.eval.cache_features:
            return None
        path = self._cache_path(split, kind)
        if not path.is_file():
            return None
        try:
            with np.load(path) as npz:
                if str(npz["key"]) != self._cache_key(split, kind):
                    return None  # another checkpoint or other data settings: re-encode
                return (torch.from_numpy(npz["features"].astype(np.float32)),
                        torch.from_numpy(npz["labels"].astype(np.int64)))
        except (OSError, ValueError, KeyError):
            return None  # unreadable cache: re-encode (and overwrite it)

    def _save_cached(self, split: str, kind: str, feats: torch.Tensor,
                     labels: torch.Tensor) -> None:
        if not self.cfg.eval.cache_features or not self.ctx.is_main:
            return
        with atomic_path(self._cache_path(split, kind), suffix=".npz") as tmp:
            np.savez(tmp, features=compact_float(feats.numpy()), labels=labels.numpy(),
                     key=np.array(self._cache_key(split, kind)))


def compact_float(array: np.ndarray) -> np.ndarray:
    """float16 when every value fits (|x| <= 65504, as features usually do), else float32:
    a cast that overflows would store inf."""
    if array.size == 0 or float(np.abs(array).max()) <= float(np.finfo(np.float16).max):
        return array.astype(np.float16)
    return array.astype(np.float32)


def dataset_label(cfg: Config) -> str:
    """A short name of the data a config reads: the dataset, or an ImageFolder's folder."""
    d = cfg.data
    name = d.dataset
    if d.dataset == "imagefolder" and d.root:
        name = Path(d.root).name or name
    if d.classes or d.exclude_classes:
        name += "-subset"
    return name


def _source(cfg: Config) -> dict[str, Any]:
    d = cfg.data
    return {"dataset": dataset_label(cfg), "name": d.dataset, "root": d.root,
            "classes": d.classes, "exclude_classes": d.exclude_classes}


def _progress(loader: Any, total: int, desc: str, cfg: Config, ctx: DistContext,
              enabled: bool) -> Any:
    from varcon.runtime.logger import Progress

    bar = Progress(total, desc, mode=cfg.train.progress, enabled=enabled and ctx.is_main)

    def gen() -> Any:
        try:
            for item in loader:
                yield item
                bar.update()
        finally:
            bar.close()

    return gen()


def encode_shard(fn: Callable[[torch.Tensor], torch.Tensor], dataset: Any, cfg: Config,
                 ctx: DistContext, *, transform: Any = None, collate_fn: Any = None,
                 batches: Callable[[Iterable[Any]], Iterable[Any]] | None = None,
                 desc: str = "features", progress: bool = True
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """This rank's share of the encoding of ``dataset``: items r, r + W, r + 2W, ... (rank r
    of W; all of them with one process), on the CPU: ``(features float32 [n, D], labels int64
    [n])``, ``[0, 0]`` and ``[0]`` when there is nothing to encode.

    ``fn`` maps a batch of images on ``ctx.device`` to ``[B, D]`` (run without gradients, in
    eval mode, under ``train.amp``'s autocast). Items are loaded in batches of
    ``eval.batch_size / W`` by ``data.num_workers`` workers: ``transform(image)`` when a
    ``transform`` is given (the items are ``(uint8 image, label)``), else as ``dataset``
    yields them, collated by ``collate_fn``. ``batches`` turns the loader's batches into
    ``(images, labels)`` pairs (``varcon embed`` drops unreadable files there); it may yield
    fewer, or none. Rank 0 shows a progress bar (``desc``) unless ``progress`` is false.
    Gather the shards with :func:`~varcon.runtime.distributed.gather_strided`.
    """
    shard = dataset
    if ctx.distributed:
        shard = torch.utils.data.Subset(dataset, range(ctx.rank, len(dataset), ctx.world_size))
    empty = (torch.zeros(0, 0), torch.zeros(0, dtype=torch.long))
    if not len(shard):
        return empty
    if transform is not None:
        shard = TransformedDataset(shard, transform)
    loader = torch.utils.data.DataLoader(
        shard, batch_size=max(cfg.eval.batch_size // ctx.world_size, 1),
        num_workers=cfg.data.num_workers, collate_fn=collate_fn,
        pin_memory=ctx.device.type == "cuda",
    )
    items: Iterable[Any] = _progress(loader, len(loader), desc, cfg, ctx, progress)
    if batches is not None:
        items = batches(items)
    try:
        return extract_features(fn, items, device=ctx.device,
                                amp_dtype=autocast_dtype(cfg.train.amp, ctx.device))
    except ValueError as exc:
        if "yielded no batches" not in str(exc):  # every batch was dropped by ``batches``
            raise
        return empty


@contextlib.contextmanager
def eval_session(checkpoint: str | Path, overrides: list[str] | None = None,
                 output_dir: str | Path | None = None) -> Any:
    """Set up processes (``torchrun`` or one), yield an :class:`EvalSession`, tear down."""
    probe = config_from_dict(apply_overrides({}, [o for o in overrides or []
                                                  if o.startswith("train.device=")]))
    ctx = setup_distributed(probe.train.device)
    try:
        yield EvalSession.from_checkpoint(checkpoint, overrides, output_dir, ctx)
        # no rank closes its connections while another still uses them (gloo can abort then)
        barrier(ctx)
    finally:
        teardown(ctx)
