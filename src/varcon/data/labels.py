"""Which training images keep their label: all, none, or a seeded fraction.

Self-supervised pre-training hides every label (``data.labels=none``); semi-supervised
pre-training keeps a class-balanced fraction (``data.labeled_fraction``). Hidden labels are
-1. The images stay where they are, so an image's index (and its seeded augmentation) does
not depend on which labels are hidden.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["UNLABELED", "labeled_mask", "partial_labels"]

UNLABELED = -1  # the label of an image whose label is hidden (or that has none)


def labeled_mask(targets: torch.Tensor, fraction: float | None, seed: int = 0) -> torch.Tensor:
    """``[N]`` bool: the images that keep their label.

    ``fraction=None`` keeps every image that has one (label >= 0). Otherwise each class c
    keeps ``max(1, round(fraction * n_c))`` of its n_c images, drawn without replacement by
    a NumPy generator seeded with ``seed`` (the same images for the same seed, whatever the
    method); images without a label never gain one.
    """
    targets = torch.as_tensor(targets, dtype=torch.long).reshape(-1)
    has_label = targets >= 0
    if fraction is None:
        return has_label
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must lie in (0, 1], got {fraction}")
    y = targets.numpy()
    rng = np.random.default_rng(seed)
    keep = np.zeros(len(y), dtype=bool)
    for c in np.unique(y[y >= 0]):
        idx = np.flatnonzero(y == c)
        count = max(1, round(fraction * len(idx)))
        keep[idx if count >= len(idx) else rng.choice(idx, count, replace=False)] = True
    return torch.from_numpy(keep)


def partial_labels(targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``targets`` with :data:`UNLABELED` where ``mask`` is False (LongTensor [N])."""
    targets = torch.as_tensor(targets, dtype=torch.long).reshape(-1)
    return torch.where(mask, targets, torch.full_like(targets, UNLABELED))
