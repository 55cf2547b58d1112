"""Datasets and transforms for a run, from its config."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from varcon.data import build_dataset, build_transform
from varcon.data.labels import labeled_mask, listed_mask, partial_labels, read_labeled_list
from varcon.data.sampling import ClassBalancedBatchSampler, EpochBatchSampler
from varcon.data.subsets import ClassSubset, item_paths, select_classes, take_per_class
from varcon.data.variants import add_variants

from .config import Config
from .distributed import DistContext, barrier

__all__ = ["RunData", "build_split", "build_train_data", "build_train_sampler",
           "run_network_spec"]


@dataclass
class RunData:
    """A run's training data. ``dataset``: the labelled training images (what evaluation
    uses: the kNN bank, the probe's training set); ``pretrain_set`` (default ``dataset``):
    what pre-training reads, with ``pretrain_labels`` (-1 for a hidden label) in place of
    its own labels when set."""

    dataset: Any  # training split: (uint8 image [C,H,W], label)
    info: Any  # DatasetInfo
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    train_transform: Callable[[torch.Tensor], torch.Tensor]
    pretrain_set: Any = None
    pretrain_labels: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.pretrain_set is None:
            self.pretrain_set = self.dataset

    @property
    def has_labels(self) -> bool:
        """Whether any training image has a label (evaluation needs some)."""
        return len(self.dataset) > 0


def build_split(cfg: Config, split: str, ctx: DistContext | None = None) -> Any:
    """Load one split, restricted to ``data.classes``/``data.exclude_classes`` (and, for
    the training split, ``data.per_class`` images per class, seeded by ``cfg.seed``), then
    relabelled by ``data.rotations``/``data.channel_orders`` (:mod:`varcon.data.variants`).

    Rank 0 loads first (it may write the decoded-image cache); the other ranks then read it.
    """
    d = cfg.data

    def load() -> Any:
        dataset = build_dataset(
            d.dataset, d.root, split, download=d.download, image_size=d.image_size,
            cache=d.cache, cache_dir=d.cache_dir, bad_files=d.bad_files, channels=d.channels,
            # normalisation statistics always come from the training split (datasets with
            # fixed statistics, e.g. digits and CIFAR, ignore data.stats)
            stats=d.stats if split == "train" else "default",
        )
        dataset = select_classes(dataset, d.classes, d.exclude_classes)
        if split == "train" and d.per_class is not None:
            dataset = take_per_class(dataset, d.per_class, seed=cfg.seed)
        # after the subsets: per_class counts images of the original classes
        return add_variants(dataset, d.rotations, d.channel_orders)

    if ctx is None or not ctx.distributed:
        return load()
    dataset = load() if ctx.is_main else None
    barrier(ctx)
    return dataset if ctx.is_main else load()


def _channels(values: list[float] | None, default: tuple[float, ...],
              channels: int) -> tuple[float, ...]:
    if values is None:
        return tuple(default)
    if len(values) == 1:
        return tuple(values) * channels
    return tuple(values)


def _split_by_labels(cfg: Config, full: Any) -> tuple[Any, Any, torch.Tensor | None]:
    """(labelled images, what pre-training reads, its labels or None) for ``data.labels``,
    ``data.labeled_fraction`` or ``data.labeled_list``, and what the method does with
    labels."""
    from varcon.methods import get_method

    use = get_method(cfg.method).labels
    d = cfg.data
    targets = getattr(full, "targets", None)
    if (targets is None and use == "required" and d.labeled_fraction is None
            and d.labeled_list is None):
        return full, full, None  # a dataset without .targets: every image has its label
    if targets is None:
        raise ValueError(f"{type(full).__name__} has no .targets (a LongTensor of its labels, "
                         "-1 for none): self- and semi-supervised training needs it")
    targets = torch.as_tensor(targets, dtype=torch.long)
    if d.labeled_list is not None:
        paths = item_paths(full)
        if paths is None:
            variants = (" with data.rotations/channel_orders"
                        if d.rotations * d.channel_orders > 1 else "")
            raise ValueError(
                f"data.labeled_list names image files, and data.dataset={d.dataset}{variants} "
                "does not say which file an image is: use data.dataset=imagefolder, or "
                "data.labeled_fraction")
        mask = listed_mask(paths, read_labeled_list(d.labeled_list), targets)
    else:
        mask = labeled_mask(targets, d.labeled_fraction, seed=cfg.seed)
    labeled = full
    if not bool(mask.all()):
        kept = torch.nonzero(mask).reshape(-1)
        labeled = ClassSubset(full, kept, torch.arange(max(full.info.num_classes, 1)), full.info)
    if use == "required":  # supervised: trains on the labelled images only
        if len(labeled) == 0:
            raise ValueError(
                f"method={cfg.method} is supervised but the training split "
                f"({cfg.data.root or cfg.data.dataset}) has no labelled image (a folder "
                "without class folders?): use method=simclr or method=varcon_ssl with "
                "data.labels=none, or sort the images into <root>/train/<class>/ folders")
        return labeled, labeled, None
    hidden = use == "ignored" or cfg.data.labels == "none"
    shown = torch.zeros_like(mask) if hidden else mask
    return labeled, full, partial_labels(targets, shown)


def build_train_data(cfg: Config, ctx: DistContext | None = None) -> RunData:
    full = build_split(cfg, "train", ctx)
    dataset, pretrain_set, pretrain_labels = _split_by_labels(cfg, full)
    info = full.info
    image_size = cfg.data.image_size or info.image_size
    mean = _channels(cfg.data.mean, info.mean, info.channels)
    std = _channels(cfg.data.std, info.std, info.channels)
    transform = build_transform(
        cfg.data.augment, image_size, mean, std, **cfg.data.augment_params
    )
    return RunData(dataset, info, image_size, mean, std, transform, pretrain_set,
                   pretrain_labels)


def build_train_sampler(
    cfg: Config, dataset: Any, ctx: DistContext | None = None
) -> EpochBatchSampler | ClassBalancedBatchSampler:
    """This process's batch sampler for pre-training (``data.sampler``): full global batches
    of ``optim.batch_size`` split over the processes, ``(index, item_seed)`` items,
    resumable with ``set_epoch(epoch, first_step)``. Raises ``ValueError`` naming the fix
    when the batch does not fit the data (checked before any step)."""
    rank, world = (ctx.rank, ctx.world_size) if ctx is not None else (0, 1)
    per_process = cfg.optim.batch_size // world
    if cfg.data.sampler == "class_balanced":
        assert cfg.data.samples_per_class is not None  # DataConfig.problems requires it
        targets = getattr(dataset, "targets", None)
        if targets is None:
            raise ValueError(
                f"data.sampler=class_balanced needs the labels of the training split, but "
                f"{type(dataset).__name__} has no .targets: use data.sampler=random"
            )
        return ClassBalancedBatchSampler(
            targets, per_process, cfg.data.samples_per_class, rank=rank, world_size=world,
            seed=cfg.seed,
        )
    return EpochBatchSampler(len(dataset), per_process, rank=rank, world_size=world,
                             seed=cfg.seed)


def run_network_spec(cfg: Config, data: RunData) -> dict[str, Any]:
    """The network spec (plain data, stored in checkpoints) of a run's config and data."""
    from varcon.models import network_spec

    return network_spec(
        cfg.method, cfg.model.encoder, num_classes=data.info.num_classes,
        in_channels=data.info.channels, image_size=data.image_size,
        head_dim=cfg.model.head_dim, head_hidden=cfg.model.head_hidden,
        encoder_kwargs=cfg.model.kwargs, mean=data.mean, std=data.std,
    )
