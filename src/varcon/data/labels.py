"""Which training images keep their label: all, none, a seeded fraction, or those a file
lists.

Self-supervised pre-training hides every label (``data.labels=none``); semi-supervised
pre-training keeps a class-balanced fraction (``data.labeled_fraction``) or the images a
text file names (``data.labeled_list``). Hidden labels are
-1. The images stay where they are, so an image's index (and its seeded augmentation) does
not depend on which labels are hidden.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from varcon._text import shorten

__all__ = ["UNLABELED", "labeled_mask", "listed_mask", "partial_labels", "read_labeled_list"]

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


def read_labeled_list(path: str | os.PathLike) -> list[str]:
    """The image names a labeled-list file holds: one per line, blank lines and lines that
    start with ``#`` skipped, surrounding spaces stripped. Raises ``ValueError`` for a file
    that is missing or names no image."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise ValueError(f"data.labeled_list: no file {file} (a text file naming the labeled "
                         "training images, one per line, e.g. cat/0001.jpg)")
    names = [line.strip() for line in file.read_text(encoding="utf-8").splitlines()]
    names = [n for n in names if n and not n.startswith("#")]
    if not names:
        raise ValueError(f"data.labeled_list: {file} names no image (one per line, e.g. "
                         "cat/0001.jpg; lines starting with # are comments)")
    return names


def _parts(path: str) -> tuple[str, ...]:
    return Path(os.path.normpath(path)).parts


def listed_mask(item_paths: Sequence[str], names: Sequence[str],
                targets: torch.Tensor, source: str = "data.labeled_list") -> torch.Tensor:
    """``[N]`` bool: the items whose file ``names`` lists (the labeled images).

    A name is an absolute path, or the end of one: ``cat/0001.jpg`` is the file
    ``<root>/train/cat/0001.jpg``. ``item_paths[i]`` is item i's file and ``targets[i]`` its
    label. Raises ``ValueError`` naming the fix for a name that matches no training image
    (a typo, or an image that ``data.per_class`` / ``data.classes`` left out), one that
    matches several (give the class folder too), and a listed image without a label.
    """
    targets = torch.as_tensor(targets, dtype=torch.long).reshape(-1)
    if len(item_paths) != len(targets):
        raise ValueError(f"{len(item_paths)} paths but {len(targets)} labels")
    items = [_parts(os.path.abspath(p)) for p in item_paths]
    by_end: dict[int, dict[tuple[str, ...], list[int]]] = {}  # depth -> path end -> items
    keep = np.zeros(len(items), dtype=bool)
    missing: list[str] = []
    ambiguous: list[str] = []
    for name in names:
        parts = _parts(os.path.expanduser(name))  # an absolute path is its own whole end
        depth = len(parts)
        if depth not in by_end:
            table: dict[tuple[str, ...], list[int]] = {}
            for i, p in enumerate(items):
                table.setdefault(p[-depth:], []).append(i)
            by_end[depth] = table
        found = by_end[depth].get(parts, [])
        if not found:
            missing.append(name)
        elif len(found) > 1:
            ambiguous.append(name)
        else:
            keep[found[0]] = True
    if missing:
        raise ValueError(
            f"{source}: {len(missing)} of {len(names)} listed image(s) are not among the "
            f"{len(items)} training images: {shorten(missing)}. Name them as paths under the "
            "training folder (class/file.jpg) or absolute paths; data.per_class and "
            "data.classes leave images out")
    if ambiguous:
        raise ValueError(
            f"{source}: {len(ambiguous)} listed name(s) match several training images: "
            f"{shorten(ambiguous)}. Give more of the path (class/file.jpg)")
    unlabeled = [item_paths[int(i)] for i in np.flatnonzero(keep & (targets.numpy() < 0))]
    if unlabeled:
        raise ValueError(
            f"{source}: {len(unlabeled)} listed image(s) have no label (not in a class "
            f"folder): {shorten(unlabeled)}. Only images under <root>/train/<class>/ have one")
    return torch.from_numpy(keep)
