"""Datasets and transforms for a run, from its config."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from varcon.data import build_dataset, build_transform

from .config import Config
from .distributed import DistContext, barrier

__all__ = ["RunData", "build_split", "build_train_data"]


@dataclass
class RunData:
    dataset: Any  # training split: (uint8 image [C,H,W], label)
    info: Any  # DatasetInfo
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    train_transform: Callable[[torch.Tensor], torch.Tensor]


def build_split(cfg: Config, split: str, ctx: DistContext | None = None) -> Any:
    """Load one split. Rank 0 loads first (it may write the decoded-image cache);
    the other ranks then read it."""
    d = cfg.data

    def load() -> Any:
        return build_dataset(
            d.dataset, d.root, split, download=d.download, image_size=d.image_size,
            cache=d.cache, cache_dir=d.cache_dir, bad_files=d.bad_files,
            # normalisation statistics always come from the training split
            stats=d.stats if split == "train" and d.dataset == "imagefolder" else "default",
        )

    if ctx is None or not ctx.distributed:
        return load()
    dataset = load() if ctx.is_main else None
    barrier(ctx)
    return dataset if ctx.is_main else load()


def _channels(values: list[float] | None, default: tuple[float, ...], channels: int):
    if values is None:
        return tuple(default)
    if len(values) == 1:
        return tuple(values) * channels
    return tuple(values)


def build_train_data(cfg: Config, ctx: DistContext | None = None) -> RunData:
    dataset = build_split(cfg, "train", ctx)
    info = dataset.info
    image_size = cfg.data.image_size or info.image_size
    mean = _channels(cfg.data.mean, info.mean, info.channels)
    std = _channels(cfg.data.std, info.std, info.channels)
    transform = build_transform(
        cfg.data.augment, image_size, mean, std, **cfg.data.augment_params
    )
    return RunData(dataset, info, image_size, mean, std, transform)
