"""Many-class datasets from few-class ones: each image shown in one rotation and channel order.

A dataset with K classes becomes one with ``K * R * P`` classes: every image is assigned one
of R rotations (multiples of 90 degrees) and one of P orders of its colour channels, and its
label becomes ``(class, rotation, channel order)``::

    label' = (label * R + r) * P + p,     r in [0, R),  p in [0, P)
    image' = rot90(image, r)[perm_p]      (perm_p: the p-th permutation of (0, 1, 2),
                                           in itertools.permutations order: RGB, RBG, GRB,
                                           GBR, BRG, BGR)

The variants of one class are visibly distinct (an upside-down ship, a ship with red and blue
swapped), so every derived class is learnable from pixels, as long as the augmentation leaves
rotation and channel order alone: no 90-degree rotations, no grayscale (it erases the
channel order), and with R=4 no horizontal flips (a flipped image turned by 90 degrees is its
mirror image turned by 270). The config check refuses ``grayscale_p > 0`` with channel orders,
and ``hflip_p > 0`` or a flipping probe augmentation with R=4.
This gives a fair many-class test of a supervised contrastive loss on data at hand: with
CIFAR-10, R=4 and P=6 give 240 classes, so a batch of 64 images sees at most 64 of them and
most classes are absent from each batch.

Assignment: within each original class, the images are shuffled by a generator seeded with
``seed`` (0 by default: the same for every run, so runs with different training seeds share
their labels) and dealt to the R*P variants in turn, so each derived class holds
``n_c / (R*P)`` images (+-1). Every split is transformed the same way, so the test split's
labels follow the same rule.
"""

from __future__ import annotations

import itertools
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from .datasets import DatasetInfo

__all__ = ["CHANNEL_ORDERS", "ROTATIONS", "RotatedChannelOrderDataset", "add_variants"]

ROTATIONS = (1, 2, 4)  # allowed values of R: none, 0/180, or all four quarter turns
CHANNEL_ORDERS = tuple(itertools.permutations(range(3)))  # the 6 orders of (R, G, B)
_ORDER_NAMES = tuple("".join("RGB"[i] for i in order) for order in CHANNEL_ORDERS)


def check_variants(rotations: int, channel_orders: int) -> None:
    """Raise ``ValueError`` naming the allowed values for an invalid R or P."""
    if rotations not in ROTATIONS:
        raise ValueError(f"data.rotations must be one of {ROTATIONS} (quarter turns per image: "
                         f"1 = none, 2 = 0/180 degrees, 4 = all), got {rotations!r}")
    if not isinstance(channel_orders, int) or not 1 <= channel_orders <= len(CHANNEL_ORDERS):
        raise ValueError(f"data.channel_orders must be an integer in 1..{len(CHANNEL_ORDERS)} "
                         f"(orders of the RGB channels), got {channel_orders!r}")


class RotatedChannelOrderDataset(Dataset):
    """``dataset`` with each image in its assigned rotation and channel order (see module doc).

    Args:
        dataset: yields ``(uint8 image [C, H, W], label)`` and has ``targets`` and ``info``.
        rotations: R in (1, 2, 4); rotation r turns the image by ``r * 360 / R`` degrees.
        channel_orders: P in 1..6 (needs 3-channel images when P > 1).
        seed: seed of the assignment of images to variants.

    ``targets`` holds the derived labels ``[N]``; ``variant[i] = r * P + p`` of item i.
    """

    def __init__(self, dataset: Any, rotations: int, channel_orders: int, seed: int = 0) -> None:
        check_variants(rotations, channel_orders)
        info: DatasetInfo = dataset.info
        if channel_orders > 1 and info.channels != 3:
            raise ValueError(f"data.channel_orders={channel_orders} needs RGB images; "
                             f"{info.name} has {info.channels} channel(s): use "
                             "data.channel_orders=1")
        self.dataset = dataset
        self.rotations, self.channel_orders = rotations, channel_orders
        per_class = rotations * channel_orders
        base = torch.as_tensor(dataset.targets, dtype=torch.long).reshape(-1)
        variant = np.zeros(len(base), dtype=np.int64)
        rng = np.random.default_rng(seed)
        labels = base.numpy()
        for c in np.unique(labels):
            members = rng.permutation(np.flatnonzero(labels == c))
            variant[members] = np.arange(len(members)) % per_class
        self.variant = torch.from_numpy(variant)
        self.targets = base * per_class + self.variant
        names = [
            f"{name}/rot{(360 // rotations) * r}/{_ORDER_NAMES[p]}"
            for name in info.class_names for r in range(rotations) for p in range(channel_orders)
        ]
        self.info = replace(info, num_classes=info.num_classes * per_class, class_names=names)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image, _ = self.dataset[index]
        r, p = divmod(int(self.variant[index]), self.channel_orders)
        quarter_turns = r * (4 // self.rotations)
        if quarter_turns:
            image = torch.rot90(image, quarter_turns, dims=(-2, -1))
        if p:
            image = image[list(CHANNEL_ORDERS[p])]
        return image.contiguous(), int(self.targets[index])


def add_variants(dataset: Any, rotations: int = 1, channel_orders: int = 1, seed: int = 0) -> Any:
    """``dataset`` itself when R = P = 1, else a :class:`RotatedChannelOrderDataset`."""
    check_variants(rotations, channel_orders)
    if rotations == 1 and channel_orders == 1:
        return dataset
    return RotatedChannelOrderDataset(dataset, rotations, channel_orders, seed)
