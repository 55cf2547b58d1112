"""Datasets by name: ``data.dataset=digits | cifar10 | cifar100 | imagefolder`` and yours.

A dataset is a :class:`DatasetSpec`: a loader that returns one split, the number of channels
of its images, whether it needs ``data.root``, its default normalisation statistics and a
one-line description. :func:`varcon.data.build_dataset`, the config validation, ``varcon
embed`` and the exporter look datasets up here instead of keeping their own lists.

Add one (worked example: ``docs/examples/toy_dataset.py``)::

    from varcon.data import DatasetSpec, register_dataset

    register_dataset(DatasetSpec(name="shapes", load=load_shapes, channels=3,
                                 mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25)))

This module imports nothing of varcon but the generic registry, so anything may import it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from varcon._registry import Registry

__all__ = ["DATASETS", "DatasetSpec", "dataset_names", "get_dataset", "register_dataset"]


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset that ``data.dataset=<name>`` selects.

    Attributes:
        name: the ``data.dataset`` value.
        load: ``(root, split, **options) -> dataset``. ``split`` is ``"train"`` or
            ``"test"``; ``options`` are the ``data.*`` settings :func:`build_dataset` passes
            on (``download``, ``image_size``, ``cache``, ``cache_dir``, ``bad_files``,
            ``stats``, ``channels``), which a loader may ignore (accept ``**options``). The
            dataset yields ``(uint8 image [C, H, W], int label)`` and has ``.info`` (a
            :class:`~varcon.data.DatasetInfo`) and ``.targets`` (the labels, LongTensor [N]).
        channels: the images' number of channels (1 or 3); None when ``data.channels``
            chooses it (as for ``imagefolder``: the loader then gets ``channels=None`` for
            "the dataset's default").
        mean: default per-channel normalisation mean, in [0, 1] units (what the loaded
            split's ``info.mean`` holds unless the loader measures its own).
        std: default per-channel standard deviation, in [0, 1] units.
        needs_root: whether ``data.root`` must be set (the folder holding the files).
        description: one line for the docs and ``--help``.
    """

    name: str
    load: Callable[..., Any]
    channels: int | None
    mean: tuple[float, ...]
    std: tuple[float, ...]
    needs_root: bool = False
    description: str = ""

    def __post_init__(self) -> None:
        if not callable(self.load):
            raise TypeError(f"dataset {self.name!r}: load must be callable, got "
                            f"{type(self.load).__name__}")
        if self.channels is not None and self.channels not in (1, 3):
            raise ValueError(f"dataset {self.name!r}: channels must be 1, 3 or None, got "
                             f"{self.channels!r}")
        if not self.mean or len(self.mean) != len(self.std) or (
                self.channels is not None and len(self.mean) not in (1, self.channels)):
            raise ValueError(f"dataset {self.name!r}: mean and std need one number per "
                             f"channel, got {self.mean} and {self.std}")
        if any(not s > 0 for s in self.std):
            raise ValueError(f"dataset {self.name!r}: std must be > 0, got {self.std}")


DATASETS: Registry[DatasetSpec] = Registry("dataset")


def register_dataset(spec: DatasetSpec, *, overwrite: bool = False) -> DatasetSpec:
    """Make ``spec`` available as ``data.dataset=<spec.name>`` (config, CLI, engine)."""
    if not isinstance(spec, DatasetSpec):
        raise TypeError(f"register_dataset expects a DatasetSpec, got {type(spec).__name__}")
    return DATASETS.register(spec.name, spec, overwrite=overwrite)


def get_dataset(name: str) -> DatasetSpec:
    """The registered dataset ``name`` (``ValueError`` listing the valid ones otherwise)."""
    return DATASETS.get(name)


def dataset_names() -> tuple[str, ...]:
    """The registered dataset names, built-in ones first."""
    return DATASETS.names()
