"""Tiny datasets in their real on-disk formats, for tests (``from datagen import ...``).

* :func:`write_cifar_python`: the torchvision-readable CIFAR-10 / CIFAR-100 python
  pickles (``cifar-10-batches-py/`` or ``cifar-100-python/``) with few images. Their md5
  sums differ from the official release, so torchvision's own ``CIFAR10(root)`` rejects
  them; ``varcon.data.build_dataset`` reads them (it verifies md5 first and, for files
  that are present but unofficial, reads them without the checksum, validating content).
* :func:`write_image_folder`: an ImageFolder tree ``root/<split>/<class>/<i>.<ext>``.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["class_value", "make_image", "write_cifar_python", "write_image_folder"]

_EXT = {"png": "png", "jpeg": "jpg", "jpg": "jpg", "bmp": "bmp", "webp": "webp"}
_PIL_FMT = {"png": "PNG", "jpeg": "JPEG", "jpg": "JPEG", "bmp": "BMP", "webp": "WEBP"}


def _dump(obj: object, path: Path) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def _cifar_images(n: int, num_classes: int, rng: np.random.Generator
                  ) -> tuple[np.ndarray, list[int]]:
    labels = [i % num_classes for i in range(n)]  # every class present when n >= classes
    rng.shuffle(labels)
    data = rng.integers(0, 256, size=(n, 3 * 32 * 32), dtype=np.uint8)
    # Row-major channel planes (R 1024, G 1024, B 1024), as in the official files. The first
    # red pixel stores the label so tests can check that images and labels stay paired.
    data[:, 0] = np.asarray(labels, dtype=np.uint8)
    return data, labels


def write_cifar_python(root: str | os.PathLike, kind: str = "cifar10", n_train: int = 50,
                       n_test: int = 20, seed: int = 0) -> Path:
    """Write a tiny CIFAR in torchvision's expected python-pickle layout.

    cifar10: ``root/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}``
    (n_train split over the 5 batches); cifar100: ``root/cifar-100-python/{train, test,
    meta}``. Image ``i`` has its label in its first red pixel. Returns the data folder.
    """
    rng = np.random.default_rng(seed)
    root = Path(root)
    if kind == "cifar10":
        folder = root / "cifar-10-batches-py"
        folder.mkdir(parents=True, exist_ok=True)
        data, labels = _cifar_images(n_train, 10, rng)
        for b, part in enumerate(np.array_split(np.arange(n_train), 5), start=1):
            _dump({"batch_label": f"training batch {b} of 5", "labels": [labels[i] for i in part],
                   "data": data[part], "filenames": [f"img_{i}.png" for i in part]},
                  folder / f"data_batch_{b}")
        data, labels = _cifar_images(n_test, 10, rng)
        _dump({"batch_label": "testing batch 1 of 1", "labels": labels, "data": data,
               "filenames": [f"test_{i}.png" for i in range(n_test)]}, folder / "test_batch")
        names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                 "ship", "truck"]
        _dump({"num_cases_per_batch": 10000, "label_names": names, "num_vis": 3072},
              folder / "batches.meta")
    elif kind == "cifar100":
        folder = root / "cifar-100-python"
        folder.mkdir(parents=True, exist_ok=True)
        for name, n in (("train", n_train), ("test", n_test)):
            data, labels = _cifar_images(n, 100, rng)
            _dump({"filenames": [f"{name}_{i}.png" for i in range(n)], "batch_label": name,
                   "fine_labels": labels, "coarse_labels": [lab // 5 for lab in labels],
                   "data": data}, folder / name)
        _dump({"fine_label_names": [f"class_{i:03d}" for i in range(100)],
               "coarse_label_names": [f"super_{i:02d}" for i in range(20)]}, folder / "meta")
    else:
        raise ValueError(f"kind must be 'cifar10' or 'cifar100', got {kind!r}")
    return folder


def class_value(class_index: int) -> int:
    """Base grey level of class ``class_index``'s images (they are this value +- noise)."""
    return 30 + 40 * class_index


def make_image(size: tuple[int, int], mode: str, base: int, rng: np.random.Generator
               ) -> Image.Image:
    """A (width, height) PIL image in ``mode`` ("RGB", "L", "LA", "RGBA", "P", "I;16")
    whose RGB pixels are about ``base`` (+- 8 noise)."""
    w, h = size
    rgb = np.clip(base + rng.integers(-8, 9, size=(h, w, 3)), 0, 255).astype(np.uint8)
    im = Image.fromarray(rgb, "RGB")
    if mode == "RGB":
        return im
    if mode == "I;16":
        return Image.fromarray(rgb[..., 0].astype(np.uint16) * 257)  # 16-bit grey, same level
    if mode == "RGBA":
        alpha = rng.integers(0, 256, size=(h, w, 1), dtype=np.uint8)
        return Image.fromarray(np.concatenate([rgb, alpha], axis=2), "RGBA")
    if mode == "P":
        return im.convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    return im.convert(mode)


def write_image_folder(
    root: str | os.PathLike,
    classes: Sequence[str] = ("a", "b", "c"),
    per_class: int = 4,
    size: tuple[int, int] | Sequence[tuple[int, int]] = (32, 32),
    fmt: str = "png",
    splits: Sequence[str] = ("train", "val"),
    mode: str | Sequence[str] = "RGB",
    seed: int = 0,
) -> Path:
    """Write ``root/<split>/<class>/<i>.<ext>`` with ``per_class`` images per class.

    Args:
        size: (width, height), or a list cycled over the images of each class.
        fmt: "png" | "jpeg" | "bmp" | "webp".
        mode: a PIL mode, or a list of modes cycled over the images of each class
            ("I;16" is only valid with png).
    Image pixels are about ``class_value(k)`` for the k-th class in ``classes``.
    Returns ``root``.
    """
    if fmt not in _EXT:
        raise ValueError(f"fmt must be one of {sorted(_EXT)}, got {fmt!r}")
    rng = np.random.default_rng(seed)
    sizes = [size] if isinstance(size[0], int) else list(size)  # type: ignore[index]
    modes = [mode] if isinstance(mode, str) else list(mode)
    root = Path(root)
    for split in splits:
        for k, cls in enumerate(classes):
            d = root / split / cls
            d.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                im = make_image(tuple(sizes[i % len(sizes)]), modes[i % len(modes)],
                                class_value(k), rng)
                if fmt in ("jpeg", "jpg") and im.mode not in ("RGB", "L"):
                    im = im.convert("RGB")
                im.save(d / f"{i:04d}.{_EXT[fmt]}", _PIL_FMT[fmt])
    return root
