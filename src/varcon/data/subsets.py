"""Subsets of a dataset by class: keep or drop classes, or take N images per class.

Pre-training on some classes and evaluating few-shot or linear transfer on the others (novel
classes) needs both splits restricted the same way; accuracy studies on a budget need a
class-balanced, seeded subset of the training split.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from varcon._text import shorten

from .datasets import DatasetInfo

__all__ = ["ClassSubset", "item_paths", "resolve_classes", "select_classes", "take_per_class"]


def resolve_classes(
    names: Sequence[int | str], class_names: Sequence[str], *, key: str = "classes"
) -> list[int]:
    """Class indices of ``names`` (class names, or integer indices into ``class_names``).

    A name that is neither raises ``ValueError`` listing the dataset's classes. Strings that
    are digits (``"3"``) are looked up as names first (digits' classes are named "0".."9").
    """
    index = {str(n): i for i, n in enumerate(class_names)}
    out, unknown = [], []
    for v in names:
        if isinstance(v, str) and v in index:
            out.append(index[v])
        elif isinstance(v, int) and not isinstance(v, bool) and 0 <= v < len(class_names):
            out.append(v)
        else:
            unknown.append(v)
    if unknown:
        raise ValueError(
            f"{key}: [{shorten(map(repr, unknown))}] are not classes of this dataset; give "
            f"names or indices 0..{len(class_names) - 1} of: {shorten(class_names, 50)}"
        )
    return out


class ClassSubset(Dataset):
    """The items of ``dataset`` at ``indices``, labels renumbered by ``label_map``.

    ``label_map[old_label] = new_label`` (or -1 for a dropped class); ``info`` is the
    subset's :class:`DatasetInfo` (its ``class_names`` in the new order). ``targets`` holds
    the new labels ``[len(indices)]``.
    """

    def __init__(self, dataset: Any, indices: Sequence[int] | torch.Tensor,
                 label_map: torch.Tensor, info: DatasetInfo) -> None:
        self.dataset = dataset
        self.indices = torch.as_tensor(indices, dtype=torch.long).reshape(-1)
        self.label_map = label_map
        self.targets = label_map[_targets(dataset)[self.indices]]
        if bool((self.targets < 0).any()):
            raise ValueError("ClassSubset: indices include images of dropped classes")
        self.info = info

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image, _ = self.dataset[int(self.indices[index])]
        return image, int(self.targets[index])


def item_paths(dataset: Any) -> list[str] | None:
    """The image file of each item of ``dataset`` (``[len(dataset)]``), through the class
    subsets taken of it; None when its items do not come from files (digits, CIFAR's
    arrays) or a wrapper hides which file an item is (rotations, channel orders)."""
    if isinstance(dataset, ClassSubset):
        inner = item_paths(dataset.dataset)
        return None if inner is None else [inner[int(i)] for i in dataset.indices]
    paths = getattr(dataset, "paths", None)
    if paths is None or len(paths) != len(dataset):
        return None
    return [str(p) for p in paths]


def _targets(dataset: Any) -> torch.Tensor:
    targets = getattr(dataset, "targets", None)
    if targets is None:
        raise TypeError(f"{type(dataset).__name__} has no .targets: cannot select by class")
    return torch.as_tensor(targets, dtype=torch.long).reshape(-1)


def select_classes(
    dataset: Any,
    classes: Sequence[int | str] | None = None,
    exclude_classes: Sequence[int | str] | None = None,
) -> Any:
    """Keep the images of ``classes`` (all if None) minus ``exclude_classes``.

    Labels are renumbered 0..K-1 in the dataset's own class order (so the same call on the
    training and test splits gives the same numbering). Returns ``dataset`` itself when
    nothing is removed.
    """
    info: DatasetInfo = dataset.info
    names = list(info.class_names)
    keep = set(range(len(names))) if classes is None else set(resolve_classes(
        classes, names, key="data.classes"))
    if exclude_classes is not None:
        keep -= set(resolve_classes(exclude_classes, names, key="data.exclude_classes"))
    if len(keep) == len(names):
        return dataset
    if not keep:
        raise ValueError("data.classes / data.exclude_classes leave no class to train on")
    kept = sorted(keep)
    label_map = torch.full((len(names),), -1, dtype=torch.long)
    label_map[kept] = torch.arange(len(kept))
    targets = _targets(dataset)
    indices = torch.nonzero(label_map[targets] >= 0).reshape(-1)
    new_info = replace(info, num_classes=len(kept), class_names=[names[i] for i in kept])
    return ClassSubset(dataset, indices, label_map, new_info)


def take_per_class(dataset: Any, per_class: int, seed: int = 0) -> Any:
    """A seeded subset with ``per_class`` images of each class (all of a smaller class).

    Indices are drawn without replacement by a NumPy generator seeded with ``seed`` and
    kept in dataset order; labels are unchanged.
    """
    if per_class < 1:
        raise ValueError(f"per_class must be >= 1, got {per_class}")
    targets = _targets(dataset).numpy()
    rng = np.random.default_rng(seed)
    chosen = []
    for c in np.unique(targets):
        idx = np.flatnonzero(targets == c)
        chosen.append(idx if len(idx) <= per_class else rng.choice(idx, per_class, replace=False))
    indices = np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)
    if len(indices) == len(targets):
        return dataset
    info: DatasetInfo = dataset.info
    identity = torch.arange(info.num_classes)
    return ClassSubset(dataset, torch.from_numpy(indices), identity, info)
