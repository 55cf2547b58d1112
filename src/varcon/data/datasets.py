"""Datasets: scikit-learn digits, CIFAR-10/100 (torchvision pickles), ImageFolder trees.

Each is registered by name in :mod:`varcon.data.registry` (at the end of this module), where
users add their own.

Every dataset built by :func:`build_dataset` yields ``(image, label)`` with ``image`` a
uint8 tensor [C, H, W] and ``label`` an int, and has:

* ``info``: a :class:`DatasetInfo` (name, classes, channels, image size, mean/std),
* ``targets``: a LongTensor [N] of the labels (for samplers and kNN),
* ``len(ds)``.

Small images (digits, CIFAR, small ImageFolder trees) are decoded once and held as one
uint8 tensor [N, C, H, W]; ``__getitem__`` is then an index. Large ImageFolder images
(ImageNet) are decoded per item with ``torchvision.io.decode_image`` (PIL as fallback).
"""

from __future__ import annotations

import hashlib
import io
import json
import operator
import os
import pickle
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, overload

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import datasets as tv_datasets
from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset
from torchvision.datasets.utils import check_integrity
from torchvision.io import ImageReadMode, decode_image, read_file
from torchvision.transforms.v2 import functional as F

from varcon._atomic import atomic_path, atomic_write_text
from varcon._text import shorten

from .registry import DatasetSpec, get_dataset, register_dataset

__all__ = [
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "CIFAR100_MEAN",
    "CIFAR100_STD",
    "DIGITS_MEAN",
    "DIGITS_STD",
    "IMAGENET_GRAY_MEAN",
    "IMAGENET_GRAY_STD",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "SMALL_IMAGE_MAX",
    "DatasetInfo",
    "EncodedImage",
    "ImageFileDataset",
    "PathArray",
    "TensorImageDataset",
    "build_dataset",
    "compute_mean_std",
    "decode_image_file",
]

# torchvision 0.29 deprecates its image codecs in favour of TorchCodec, warning on every
# call. They still are the fastest decoder available here; silence that one message only.
warnings.filterwarnings(
    "ignore", message="The image decoding and encoding capabilities of TorchVision",
    category=DeprecationWarning,
)

# The SupCon authors' constants (their std for CIFAR-10 is the widely used 0.2023...).
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2023, 0.1994, 0.2010)
CIFAR100_MEAN = (0.5071, 0.4867, 0.4408)
CIFAR100_STD = (0.2675, 0.2565, 0.2761)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# ImageNet's statistics for grayscale trees: the luminance L = 0.299 R + 0.587 G + 0.114 B of
# the RGB mean, and the same weighting of the RGB stds (a default; data.stats=compute measures
# a tree's own).
IMAGENET_GRAY_MEAN = (round(0.299 * 0.485 + 0.587 * 0.456 + 0.114 * 0.406, 4),)
IMAGENET_GRAY_STD = (round(0.299 * 0.229 + 0.587 * 0.224 + 0.114 * 0.225, 4),)
# Measured on the digits training split (uint8 0..255 scale / 255), see tests.
DIGITS_MEAN = (0.3053,)
DIGITS_STD = (0.3758,)

SMALL_IMAGE_MAX = 64  # images up to this many pixels on their longer side are cached
_CACHE_VERSION = 1
_SPLITS = ("train", "test")
IMAGE_CHANNELS = (1, 3)  # what image files decode to: grayscale (L) or RGB


@dataclass(frozen=True)
class DatasetInfo:
    """What the engine needs to know about a dataset.

    ``image_size`` is the height of the stored images (or the target size they were
    resized to; 224 for lazily decoded large-image trees without ``image_size``).
    ``mean``/``std`` are per channel, in [0, 1] units.
    """

    name: str
    num_classes: int
    class_names: list[str]
    channels: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]


class TensorImageDataset(Dataset):
    """All images of a split held as one uint8 tensor.

    Args:
        images: uint8 [N, C, H, W].
        targets: labels, [N] (any int sequence; stored as a LongTensor).
        info: the dataset's :class:`DatasetInfo`.
    """

    def __init__(self, images: torch.Tensor, targets: Sequence[int] | torch.Tensor,
                 info: DatasetInfo) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(f"images must be uint8 [N, C, H, W], got {images.dtype} "
                             f"{tuple(images.shape)}")
        targets = torch.as_tensor(targets, dtype=torch.long).reshape(-1)
        if len(targets) != len(images):
            raise ValueError(f"{len(images)} images but {len(targets)} targets")
        self.images = images
        self.targets = targets
        self.info = info
        # the image files the rows were decoded from, where known (an imagefolder cache)
        self.paths: PathArray | None = None

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index], int(self.targets[index])


class PathArray(Sequence[str]):
    """File paths held as one NumPy byte buffer plus offsets, read as ``str``.

    A Python list of N ``str`` objects is N separately reference-counted objects: a
    forked DataLoader worker that reads them writes their reference counts, and copy-on-write
    makes every page it touches private to that worker (at ImageNet-1K's 1,281,167 paths,
    ~110 MB more per worker over one epoch; ``BENCHMARKS.md``). Here the paths are
    ``os.fsencode``-d into one ``uint8`` buffer with ``int64`` offsets, two NumPy arrays whose
    data no reader writes; item ``i`` is decoded back with ``os.fsdecode``, so any path
    (non-ASCII, or undecodable bytes kept by ``surrogateescape``) round-trips exactly.

    A read-only sequence: ``len``, ``paths[i]`` -> ``str``, ``paths[a:b]`` -> ``list[str]``,
    iteration, ``in`` and ``.index`` (linear scans) as on the list it replaces.
    """

    __slots__ = ("_buffer", "_offsets")
    _buffer: np.ndarray  # uint8, the fsencode-d paths end to end
    _offsets: np.ndarray  # int64 [N + 1]: path i is _buffer[_offsets[i]:_offsets[i + 1]]

    def __init__(self, paths: Sequence[str | os.PathLike] | PathArray) -> None:
        if isinstance(paths, PathArray):
            self._buffer, self._offsets = paths._buffer, paths._offsets
            return
        encoded = [os.fsencode(p) for p in paths]
        offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum(np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded)),
                  out=offsets[1:])
        self._offsets = offsets
        self._buffer = np.frombuffer(b"".join(encoded), dtype=np.uint8)

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def _item(self, index: int) -> str:
        n = len(self)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError(f"path index {index} out of range for {n} paths")
        start, end = self._offsets[index], self._offsets[index + 1]
        return os.fsdecode(self._buffer[start:end].tobytes())

    @overload
    def __getitem__(self, index: int) -> str: ...

    @overload
    def __getitem__(self, index: slice) -> list[str]: ...

    def __getitem__(self, index: int | slice) -> str | list[str]:
        if isinstance(index, slice):
            return [self._item(i) for i in range(*index.indices(len(self)))]
        return self._item(operator.index(index))

    def __iter__(self) -> Iterator[str]:
        for i in range(len(self)):
            yield self._item(i)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, PathArray):
            return (np.array_equal(self._offsets, other._offsets)
                    and np.array_equal(self._buffer, other._buffer))
        if isinstance(other, (list, tuple)):
            return len(other) == len(self) and all(a == b for a, b in zip(self, other,
                                                                          strict=True))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable-looking like the list it replaces

    def __repr__(self) -> str:
        return f"PathArray({len(self)} paths, {self.nbytes} bytes)"

    @property
    def nbytes(self) -> int:
        """Bytes held: the encoded paths plus 8 per path for the offsets."""
        return int(self._buffer.nbytes + self._offsets.nbytes)


class ImageFileDataset(Dataset):
    """Image files decoded per item (ImageNet-size trees).

    Args:
        paths: image files.
        targets: their labels.
        info: the dataset's :class:`DatasetInfo`; ``info.channels`` (1 or 3) is what every
            file is decoded to.

    Items are uint8 tensors [C, H, W] at the file's own size: RGB for C = 3, grayscale
    (luminance) for C = 1. ``paths`` is a :class:`PathArray` (a read-only sequence of
    ``str``) and ``targets`` a LongTensor: no per-item Python object that DataLoader
    workers would copy page by page as they read them.
    """

    def __init__(self, paths: Sequence[str | os.PathLike], targets: Sequence[int] | torch.Tensor,
                 info: DatasetInfo) -> None:
        self.paths = PathArray(paths)
        self.targets = (targets.to(torch.long, copy=True) if isinstance(targets, torch.Tensor)
                        else torch.from_numpy(np.asarray(targets, dtype=np.int64))).reshape(-1)
        if len(self.targets) != len(self.paths):
            raise ValueError(f"{len(self.paths)} paths but {len(self.targets)} targets")
        self.info = info
        self.channels = _check_channels(info.channels)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path = self.paths[index]
        try:
            image = decode_image_file(path, self.channels)
        except (OSError, RuntimeError, ValueError) as e:
            raise _undecodable(path, e) from e
        return image, int(self.targets[index])

    def encoded(self, index: int) -> EncodedImage:
        """Item ``index``'s file, read but not decoded (see :class:`EncodedImage`)."""
        path = self.paths[index]
        try:
            return EncodedImage(read_file(path), path, self.channels)
        except (OSError, RuntimeError) as e:
            raise _undecodable(path, e) from e


def _undecodable(path: str | os.PathLike, e: Exception) -> ValueError:
    return ValueError(
        f"cannot decode image file {path}: {e}. Remove or replace it; with "
        "cache='none' a file is only decoded when first used, so bad_files='skip' "
        "catches unreadable headers at load time but not truncated image data "
        "(cache='memory' decodes everything up front)."
    )


class EncodedImage:
    """An image file's bytes, with the size its header gives, decodable at reduced scale.

    Args:
        data: the file's bytes, uint8 [n] (``torchvision.io.read_file``).
        path: the file (named in errors).
        channels: decode to RGB (3, default) or grayscale (1).

    ``size`` is ``(height, width)`` read from a JPEG header without decoding (None for
    other formats, whose size is only known after :meth:`decode`). A JPEG can be decoded
    at 1/2, 1/4 or 1/8 scale (libjpeg's DCT scaling through PIL's ``draft``): the scaled
    decode costs a fraction of the full one and averages r x r blocks on the way.
    """

    __slots__ = ("channels", "data", "path", "size")

    def __init__(self, data: torch.Tensor, path: str | os.PathLike, channels: int = 3) -> None:
        self.data = data
        self.path = path
        self.channels = _check_channels(channels)
        self.size: tuple[int, int] | None = None
        try:
            with Image.open(io.BytesIO(data.numpy().tobytes())) as im:  # header only
                if im.format == "JPEG":
                    self.size = (im.size[1], im.size[0])
        except (OSError, ValueError):
            pass  # not an image PIL knows: decode() reports it

    def decode(self, reduce: int = 1) -> torch.Tensor:
        """uint8 [C, H', W'] (RGB, or grayscale for ``channels=1``; channels-last strides).
        ``reduce`` > 1 (a JPEG only:
        1, 2, 4 or 8) gives H' = ceil(H / reduce), W' = ceil(W / reduce).

        Raises:
            ValueError: the file cannot be decoded (naming it), as
                :meth:`ImageFileDataset.__getitem__` does.
        """
        try:
            if reduce == 1 or self.size is None:
                return _decode_data(self.data, self.path, self.channels)
            if reduce not in (2, 4, 8):
                raise ValueError(f"reduce must be 1, 2, 4 or 8, got {reduce}")
            height, width = self.size
            mode = _PIL_MODES[self.channels]
            with Image.open(io.BytesIO(self.data.numpy().tobytes())) as im:
                im.draft(mode, (-(-width // reduce), -(-height // reduce)))
                arr = np.array(im.convert(mode), dtype=np.uint8)  # [H', W'(, 3)]
        except (OSError, RuntimeError, ValueError) as e:
            raise _undecodable(self.path, e) from e
        return _hwc_to_chw(arr, contiguous=False)


# --------------------------------------------------------------------------- decoding


_PIL_MODES = {1: "L", 3: "RGB"}
_READ_MODES = {1: ImageReadMode.GRAY, 3: ImageReadMode.RGB}


def _check_channels(channels: int) -> int:
    if channels not in IMAGE_CHANNELS:
        raise ValueError(f"image files decode to 1 (grayscale) or 3 (RGB) channels, got "
                         f"{channels!r}")
    return int(channels)


def _hwc_to_chw(arr: np.ndarray, *, contiguous: bool = True) -> torch.Tensor:
    """uint8 [H, W] or [H, W, C] (numpy) -> [C, H, W] tensor."""
    image = torch.from_numpy(arr)
    image = image[None] if image.ndim == 2 else image.permute(2, 0, 1)
    return image.contiguous() if contiguous else image


def decode_image_file(path: str | os.PathLike, channels: int = 3) -> torch.Tensor:
    """Decode one image file to a uint8 tensor [C, H, W]: RGB for ``channels=3`` (default),
    grayscale for ``channels=1``.

    Uses ``torchvision.io.decode_image`` (JPEG, PNG, WebP, GIF), falling back to PIL for
    the formats it cannot read (BMP, TIFF, ...). Grayscale, RGBA, palette and 16-bit
    images all become uint8 RGB (alpha is dropped); with ``channels=1`` colour images
    become their luminance (ITU-R 601: L = 0.299 R + 0.587 G + 0.114 B) and a grayscale
    file keeps its values.

    Raises:
        OSError / RuntimeError / ValueError: the file is not a readable image.
    """
    return _decode_data(read_file(str(path)), path, channels)


def _decode_data(data: torch.Tensor, path: str | os.PathLike, channels: int = 3
                 ) -> torch.Tensor:
    """decode_image_file on the file's bytes (uint8 [n])."""
    channels = _check_channels(channels)
    try:
        image = decode_image(data, mode=_READ_MODES[channels])
    except RuntimeError:
        with Image.open(io.BytesIO(data.numpy().tobytes())) as im:
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(im, dtype=np.int64)
                # 16-bit samples: keep the high byte (same as scaling by 255/65535).
                arr = np.clip(arr >> 8 if arr.max() > 255 else arr, 0, 255).astype(np.uint8)
                im2 = Image.fromarray(arr).convert(_PIL_MODES[channels])
            else:
                im2 = im.convert(_PIL_MODES[channels])
            arr = np.array(im2, dtype=np.uint8)
        return _hwc_to_chw(arr)
    if image.dtype != torch.uint8:  # 16-bit PNG
        image = F.to_dtype(image, torch.uint8, scale=True)
    return image


def _resize_square(image: torch.Tensor, size: int) -> torch.Tensor:
    """Resize the shorter side to ``size`` (antialiased) and centre-crop to size x size."""
    h, w = image.shape[-2:]
    if (h, w) == (size, size):
        return image
    if h != w:
        image = F.resize(image, [size], antialias=True)
        return F.center_crop(image, [size, size])
    return F.resize(image, [size, size], antialias=True)


# --------------------------------------------------------------------------- digits


def _load_digits(split: str) -> TensorImageDataset:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = np.rint(bunch.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)  # [N, 8, 8]
    targets = bunch.target.astype(np.int64)
    idx_train, idx_test = train_test_split(
        np.arange(len(targets)), test_size=0.25, stratify=targets, random_state=0
    )
    idx = np.sort(idx_train if split == "train" else idx_test)
    tensor = torch.from_numpy(images[idx]).unsqueeze(1).contiguous()  # [N, 1, 8, 8]
    info = DatasetInfo("digits", 10, [str(d) for d in range(10)], 1, 8, DIGITS_MEAN, DIGITS_STD)
    return TensorImageDataset(tensor, torch.from_numpy(targets[idx]), info)


# --------------------------------------------------------------------------- CIFAR


class _LocalCIFARMixin:
    """Reads CIFAR pickles whose md5 differs from the official release (generated or
    re-packed files). Presence is checked; the content is validated after loading."""

    def _check_integrity(self) -> bool:
        folder = os.path.join(self.root, self.base_folder)  # type: ignore[attr-defined]
        names = [n for n, _ in self.train_list + self.test_list]  # type: ignore[attr-defined]
        return all(os.path.isfile(os.path.join(folder, n)) for n in names)

    def _load_meta(self) -> None:
        path = os.path.join(self.root, self.base_folder, self.meta["filename"])  # type: ignore[attr-defined]
        with open(path, "rb") as f:
            data = pickle.load(f, encoding="latin1")
        self.classes = data[self.meta["key"]]  # type: ignore[attr-defined]
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}


class _LocalCIFAR10(_LocalCIFARMixin, tv_datasets.CIFAR10):
    pass


class _LocalCIFAR100(_LocalCIFARMixin, tv_datasets.CIFAR100):
    pass


def _load_cifar(name: str, root: str | os.PathLike | None, split: str,
                download: bool) -> TensorImageDataset:
    official = tv_datasets.CIFAR10 if name == "cifar10" else tv_datasets.CIFAR100
    local = _LocalCIFAR10 if name == "cifar10" else _LocalCIFAR100
    num_classes = 10 if name == "cifar10" else 100
    if root is None:
        raise ValueError(f"{name}: data.root is not set; point it at the folder that holds "
                         f"(or should hold) {official.base_folder}/")
    root = os.path.expanduser(str(root))
    folder = os.path.join(root, official.base_folder)
    files = [n for n, _ in official.train_list + official.test_list] + [
        official.meta["filename"]]
    if download:
        try:
            official(root, train=split == "train", download=True)
        except Exception as e:  # URLError, OSError, ...: no network
            missing = [f for f in files if not os.path.isfile(os.path.join(folder, f))]
            if missing:
                raise FileNotFoundError(
                    f"{name}: download into {root} failed ({type(e).__name__}: {e}). Without "
                    f"network, put the official python-version files in {folder}/: "
                    f"{', '.join(files)} (extract {official.filename} in {root})."
                ) from e
    missing = [f for f in files if not os.path.isfile(os.path.join(folder, f))]
    if missing:
        raise FileNotFoundError(
            f"{name}: missing {', '.join(missing)} in {folder}/. torchvision expects the "
            f"official python-version files there: {', '.join(files)} (extract "
            f"{official.filename} in {root}). Where a network exists, set download: true "
            f"(data.download=true) to fetch them."
        )
    verified = all(check_integrity(os.path.join(folder, n), md5)
                   for n, md5 in official.train_list + official.test_list) and check_integrity(
        os.path.join(folder, official.meta["filename"]), official.meta["md5"])
    cls = official if verified else local
    try:
        ds = cls(root, train=split == "train", download=False)
    except (pickle.UnpicklingError, EOFError, KeyError, ValueError, OSError) as e:
        raise ValueError(
            f"{name}: cannot read the CIFAR files in {folder}/ ({type(e).__name__}: {e}); they "
            f"are corrupt or not the python version. Re-extract {official.filename} there "
            f"(or set download: true where a network exists)."
        ) from e
    data = np.asarray(ds.data)
    if data.dtype != np.uint8 or data.ndim != 4 or data.shape[1:] != (32, 32, 3):
        raise ValueError(f"{name}: images in {folder}/ are {data.dtype} {data.shape}, expected "
                         "uint8 [N, 32, 32, 3]; the files are not CIFAR python batches")
    targets = torch.as_tensor(ds.targets, dtype=torch.long)
    classes = [str(c) for c in ds.classes]
    if len(classes) != num_classes or (len(targets) and (
            int(targets.min()) < 0 or int(targets.max()) >= num_classes)):
        raise ValueError(f"{name}: {folder}/ holds {len(classes)} class names and labels "
                         f"outside 0..{num_classes - 1}; these are not {name} files")
    images = torch.from_numpy(data).permute(0, 3, 1, 2).contiguous()  # [N, 3, 32, 32]
    mean, std = (CIFAR10_MEAN, CIFAR10_STD) if name == "cifar10" else (CIFAR100_MEAN,
                                                                      CIFAR100_STD)
    info = DatasetInfo(name, num_classes, classes, 3, 32, mean, std)
    return TensorImageDataset(images, targets, info)


# --------------------------------------------------------------------------- ImageFolder

_LAYOUT = ("expected an ImageFolder tree: <root>/train/<class>/<image files> and "
           "<root>/val/<class>/<image files> (or <root>/test/<class>/...)")


def _loose_images(d: Path) -> list[str]:
    """The image files directly inside ``d`` (sorted), not in sub-folders."""
    return sorted(str(p) for p in d.iterdir()
                  if p.is_file() and p.suffix.lower() in IMG_EXTENSIONS)


def _split_dir(root: Path, split: str) -> Path:
    if split == "train":
        d = root / "train"
        if not d.is_dir() and root.is_dir() and _loose_images(root):
            return root  # a flat folder of images: the training split, without labels
    else:
        d = root / "val"
        if not d.is_dir() and (root / "test").is_dir():
            d = root / "test"
    if not d.is_dir():
        name = "train" if split == "train" else "val (or test)"
        raise FileNotFoundError(f"imagefolder: {d} does not exist (split {split!r} reads "
                                f"<root>/{name}); {_LAYOUT}")
    return d


def _scan_tree(root: Path, split: str) -> tuple[list[str], list[int], list[str]]:
    """(paths, labels, class names of train) with train's sorted class -> index map. A
    training folder that holds image files and no class folder is unlabelled: every label
    -1, no class names."""
    train_dir = _split_dir(root, "train")
    # (hidden folders, e.g. the decoded-image cache .varcon_cache/, are not classes)
    if split == "train" and not any(p.is_dir() and not p.name.startswith(".")
                                    for p in train_dir.iterdir()):
        loose = _loose_images(train_dir)
        if not loose:
            raise FileNotFoundError(
                f"imagefolder: no class folder and no image file (extensions "
                f"{', '.join(IMG_EXTENSIONS)}) in {train_dir}; {_LAYOUT}, or a folder of "
                "images without labels (data.labels=none)")
        return loose, [-1] * len(loose), []
    try:
        classes, class_to_idx = find_classes(train_dir)
    except FileNotFoundError as e:
        raise FileNotFoundError(f"imagefolder: no class folder in {train_dir}; {_LAYOUT}") from e
    split_dir = train_dir if split == "train" else _split_dir(root, split)
    if split_dir == train_dir:
        present = classes
    else:
        try:
            present, _ = find_classes(split_dir)
        except FileNotFoundError as e:
            raise FileNotFoundError(
                f"imagefolder: no class folder in {split_dir}; {_LAYOUT}") from e
    unknown = sorted(set(present) - set(class_to_idx))
    if unknown:
        raise ValueError(
            f"imagefolder: {split_dir} has {len(unknown)} class folder(s) that {train_dir} "
            f"lacks ({shorten(unknown)}); "
            "train and val must use the same classes (labels follow train's sorted class "
            "names). Add them to train or remove them from val."
        )
    samples = make_dataset(str(split_dir), {c: class_to_idx[c] for c in present},
                           extensions=IMG_EXTENSIONS, allow_empty=True)
    counts = dict.fromkeys(present, 0)
    for _, label in samples:
        counts[classes[label]] += 1
    empty = [c for c, n in counts.items() if n == 0]
    if len(empty) == 1:
        raise ValueError(
            f"imagefolder: class folder {split_dir / empty[0]} holds no image file "
            f"(extensions {', '.join(IMG_EXTENSIONS)}). Add images or remove the folder."
        )
    if empty:
        raise ValueError(
            f"imagefolder: {len(empty)} class folders in {split_dir} hold no image file "
            f"(extensions {', '.join(IMG_EXTENSIONS)}): {shorten(empty)}. Add images or "
            "remove the folders."
        )
    paths = [p for p, _ in samples]
    labels = [t for _, t in samples]
    return paths, labels, classes


def _peek_size(paths: Sequence[str]) -> tuple[int, int] | None:
    """(width, height) of the first file PIL can identify."""
    for p in paths[:50]:
        try:
            with Image.open(p) as im:
                return im.size
        except (OSError, ValueError):
            continue
    return None


def _writable_dir(d: Path) -> bool:
    try:
        d.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=d):
            pass
        return True
    except OSError:
        return False


def _cache_dir(root: Path, cache_dir: str | os.PathLike | None) -> Path:
    if cache_dir is not None:
        d = Path(cache_dir).expanduser()
        if not _writable_dir(d):
            raise ValueError(f"cache_dir {d} is not writable; choose another cache_dir")
        return d
    d = root / ".varcon_cache"
    if _writable_dir(d):
        return d
    d = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "varcon"
    if not _writable_dir(d):
        raise ValueError(f"neither {root / '.varcon_cache'} nor {d} is writable; pass "
                         "cache_dir= (data.cache_dir) pointing at a writable folder, or "
                         "cache='none'")
    return d


def _tree_key(root: Path, split: str, paths: Sequence[str], labels: Sequence[int],
              classes: Sequence[str], image_size: int | None, bad_files: str,
              channels: int = 3) -> str:
    h = hashlib.sha256()
    fields: list[object] = [_CACHE_VERSION, split, image_size, bad_files, list(classes)]
    if channels != 3:  # RGB caches keep the key they had before grayscale decoding existed
        fields.append(channels)
    h.update(json.dumps(fields).encode())
    for p, t in zip(paths, labels, strict=True):
        st = os.stat(p)
        h.update(f"{os.path.relpath(p, root)}\0{t}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:20]


def _decode_all(paths: Sequence[str], image_size: int | None, channels: int = 3
                ) -> list[torch.Tensor | Exception]:
    def one(p: str) -> torch.Tensor | Exception:
        try:
            img = decode_image_file(p, channels)
        except (OSError, RuntimeError, ValueError) as e:
            return e
        return _resize_square(img, image_size) if image_size is not None else img

    workers = max(1, min(8, os.cpu_count() or 1))
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(one, paths, chunksize=64))


def _report_bad(bad: list[tuple[str, str]], bad_files: str, where: Path) -> None:
    if not bad:
        return
    listed = shorten((f"{p}: {msg}" for p, msg in bad), sep="\n  ")
    if bad_files == "error":
        raise ValueError(
            f"imagefolder: {len(bad)} unreadable image file(s) in {where}:\n  {listed}\n"
            "Remove or replace them, or set bad_files='skip' (data.bad_files=skip) to leave "
            "them out."
        )
    warnings.warn(f"imagefolder: skipped {len(bad)} unreadable image file(s) in {where} "
                  f"(bad_files='skip'):\n  {listed}", stacklevel=4)


def _load_imagefolder(root: str | os.PathLike | None, split: str, image_size: int | None,
                      cache: str, cache_dir: str | os.PathLike | None, bad_files: str,
                      stats: str, channels: int = 3) -> TensorImageDataset | ImageFileDataset:
    if root is None:
        raise ValueError(f"imagefolder: data.root is not set; {_LAYOUT}")
    root_p = Path(root).expanduser().resolve()
    if not root_p.exists():
        raise FileNotFoundError(f"imagefolder: {root_p} does not exist; {_LAYOUT}")
    paths, labels, classes = _scan_tree(root_p, split)
    split_dir = _split_dir(root_p, split)
    if cache == "auto":
        size = _peek_size(paths)
        small = (image_size is not None and image_size <= SMALL_IMAGE_MAX) or (
            size is not None and max(size) <= SMALL_IMAGE_MAX)
        cache = "memory" if small else "none"

    if cache == "none":
        if bad_files == "skip":  # header check (PIL reads headers only)
            bad, keep = [], []
            for p, t in zip(paths, labels, strict=True):
                try:
                    with Image.open(p):
                        keep.append((p, t))
                except (OSError, ValueError) as e:
                    bad.append((p, str(e)))
            _report_bad(bad, bad_files, split_dir)
            paths, labels = [p for p, _ in keep], [t for _, t in keep]
        if image_size is None:
            size = _peek_size(paths)
            image_size = size[1] if size is not None and max(size) <= SMALL_IMAGE_MAX else 224
        mean, std = _imagenet_stats(channels)
        info = DatasetInfo("imagefolder", len(classes), list(classes), channels, image_size,
                           mean, std)
        ds: TensorImageDataset | ImageFileDataset = ImageFileDataset(paths, labels, info)
    else:
        cdir = _cache_dir(root_p, cache_dir)
        key = _tree_key(root_p, split, paths, labels, classes, image_size, bad_files, channels)
        prefix = (f"imagefolder-{root_p.name}-"
                  f"{hashlib.sha256(str(root_p).encode()).hexdigest()[:8]}-{split}-")
        file = cdir / f"{prefix}{key}.pt"
        images = targets = None
        kept = paths  # the files the cache's rows come from
        if file.is_file():
            try:
                blob = torch.load(file, map_location="cpu", weights_only=True, mmap=True)
                if blob.get("key") == key:
                    images, targets = blob["images"], blob["targets"]
            except Exception:  # unreadable cache: rebuild it
                images = None
        if images is None:
            decoded = _decode_all(paths, image_size, channels)
            bad = [(p, f"{type(r).__name__}: {r}".splitlines()[0][:200])
                   for p, r in zip(paths, decoded, strict=True) if isinstance(r, Exception)]
            _report_bad(bad, bad_files, split_dir)
            good = [(p, r, t) for p, r, t in zip(paths, decoded, labels, strict=True)
                    if not isinstance(r, Exception)]
            if not good:
                raise ValueError(f"imagefolder: no readable image in {split_dir}")
            shapes = {tuple(r.shape) for _, r, _ in good}
            if len(shapes) > 1:
                by_shape: dict[tuple, str] = {}
                for p, r, _ in good:
                    by_shape.setdefault(tuple(r.shape), p)
                examples = "; ".join(f"{s[2]}x{s[1]} e.g. {p}" for s, p in
                                     list(by_shape.items())[:3])
                raise ValueError(
                    f"imagefolder: images in {split_dir} differ in size ({examples}); the "
                    "in-memory cache needs one size: set image_size (data.image_size) to "
                    "resize them all, or cache='none' to decode per item."
                )
            images = torch.stack([r for _, r, _ in good])
            targets = torch.tensor([t for _, _, t in good], dtype=torch.long)
            kept = [p for p, _, _ in good]
            blob = {"key": key, "images": images, "targets": targets}
            with atomic_path(file) as tmp:
                torch.save(blob, tmp)
            for old in cdir.glob(f"{prefix}*.pt"):  # caches of an older tree
                if old != file:
                    old.unlink(missing_ok=True)
        assert targets is not None  # read with the images, or decoded with them
        info = DatasetInfo("imagefolder", len(classes), list(classes), int(images.shape[1]),
                           int(images.shape[2]), *_imagenet_stats(int(images.shape[1])))
        ds = TensorImageDataset(images, targets, info)
        ds.cache_file = file  # type: ignore[attr-defined]
        if len(kept) == len(ds):  # (a cache read back after skipped files: rows unknown)
            ds.paths = PathArray(kept)

    if stats == "compute":
        stats_dir = _cache_dir(root_p, cache_dir)
        tag = hashlib.sha256(str(root_p).encode()).hexdigest()[:8]
        mean, std = compute_mean_std(
            ds, cache_path=stats_dir / (f"stats-{root_p.name}-{tag}-{split}-{image_size}"
                                        f"{'-gray' if channels == 1 else ''}.json"))
        ds.info = DatasetInfo(ds.info.name, ds.info.num_classes, ds.info.class_names,
                              ds.info.channels, ds.info.image_size, mean, std)
    return ds


def _imagenet_stats(channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    return ((IMAGENET_MEAN, IMAGENET_STD) if channels == 3
            else (IMAGENET_GRAY_MEAN, IMAGENET_GRAY_STD))


# --------------------------------------------------------------------------- public


def build_dataset(
    name: str,
    root: str | os.PathLike | None,
    split: str,
    *,
    download: bool = False,
    image_size: int | None = None,
    cache: str = "auto",
    cache_dir: str | os.PathLike | None = None,
    bad_files: str = "error",
    stats: str = "default",
    channels: int | None = None,
) -> Any:
    """Load one split of a registered dataset (:mod:`varcon.data.registry`).

    Args:
        name: ``"digits"`` | ``"cifar10"`` | ``"cifar100"`` | ``"imagefolder"``, or a
            name added with :func:`~varcon.data.register_dataset` (its loader gets ``root``,
            ``split`` and the options below).
        root: dataset folder (ignored for digits). CIFAR: the folder holding
            ``cifar-10-batches-py/`` or ``cifar-100-python/``. ImageFolder: the folder
            holding ``train/<class>/*`` and ``val/<class>/*`` (or ``test/``).
        split: ``"train"`` | ``"test"`` (ImageFolder's ``"test"`` reads ``val/``, else
            ``test/``).
        download: let torchvision download CIFAR (needs a network). Default False.
            CIFAR files whose md5 sums match the official release are read by
            torchvision's CIFAR10/CIFAR100 unchanged; files that are present but differ
            (re-packed, or generated for tests) are read by a subclass that skips only the
            md5 check, then validated (uint8 [N, 32, 32, 3], labels in range).
        image_size: ImageFolder only: resize cached images to image_size x image_size
            (shorter side, then centre crop). Default None: keep the stored size.
        cache: ImageFolder only. ``"auto"`` (default): decode all images once into a
            uint8 tensor [N, C, S, S], cached on disk, when they are small (first image
            <= 64 px on its longer side, or image_size <= 64), else decode per item.
            ``"memory"`` forces the cache, ``"none"`` decodes per item.
        cache_dir: where the decoded cache goes. Default ``<root>/.varcon_cache/``, or
            ``~/.cache/varcon/`` when root is not writable.
        bad_files: ``"error"`` (default) raises on an unreadable image naming it;
            ``"skip"`` leaves such files out with a warning.
        stats: ImageFolder only. ``"default"``: ImageNet mean/std (for grayscale, their
            luminance weighting ``IMAGENET_GRAY_MEAN``/``IMAGENET_GRAY_STD``);
            ``"compute"``: measure them with :func:`compute_mean_std` (cached in the cache
            folder).
        channels: ImageFolder: decode every file to 3 (RGB, the default for None) or 1
            (grayscale) channels. Other datasets have their own (digits 1, CIFAR 3); a
            different number is refused.

    Returns:
        A dataset of ``(uint8 image [C, H, W], int label)`` with ``.info`` and
        ``.targets`` (LongTensor [N]): a :class:`TensorImageDataset` or
        :class:`ImageFileDataset` for the built-in datasets.
    """
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {_SPLITS}, got {split!r}")
    if cache not in ("auto", "memory", "none"):
        raise ValueError(f"cache must be 'auto', 'memory' or 'none', got {cache!r}")
    if bad_files not in ("error", "skip"):
        raise ValueError(f"bad_files must be 'error' or 'skip', got {bad_files!r}")
    if stats not in ("default", "compute"):
        raise ValueError(f"stats must be 'default' or 'compute', got {stats!r}")
    if image_size is not None and (not isinstance(image_size, int) or image_size < 1):
        raise ValueError(f"image_size must be a positive int or None, got {image_size!r}")
    spec = get_dataset(name)  # ValueError naming the registered datasets
    if channels is not None:
        _check_channels(channels)
        if spec.channels is not None and channels != spec.channels:
            raise ValueError(f"{name} images have {spec.channels} channel(s); "
                             f"channels={channels} (data.channels) only chooses how "
                             "imagefolder files are decoded: drop it for this dataset")
    dataset = spec.load(root, split, download=download, image_size=image_size, cache=cache,
                        cache_dir=cache_dir, bad_files=bad_files, stats=stats,
                        channels=channels)
    missing = [a for a in ("info", "targets") if not hasattr(dataset, a)]
    if missing:
        raise TypeError(f"dataset {name!r}: its loader returned a {type(dataset).__name__} "
                        f"without {' or '.join('.' + a for a in missing)}; a loader must "
                        "return a dataset with .info (DatasetInfo) and .targets (labels)")
    return dataset


# The built-in datasets, as registered (loader signature: (root, split, **options)).


def _digits(root: str | os.PathLike | None, split: str, **options: object
            ) -> TensorImageDataset:
    return _load_digits(split)


def _cifar(name: str) -> Callable[..., TensorImageDataset]:
    def load(root: str | os.PathLike | None, split: str, *, download: bool = False,
             **options: object) -> TensorImageDataset:
        return _load_cifar(name, root, split, download)

    return load


def _imagefolder(root: str | os.PathLike | None, split: str, *, image_size: int | None = None,
                 cache: str = "auto", cache_dir: str | os.PathLike | None = None,
                 bad_files: str = "error", stats: str = "default", channels: int | None = None,
                 **options: object) -> TensorImageDataset | ImageFileDataset:
    return _load_imagefolder(root, split, image_size, cache, cache_dir, bad_files, stats,
                             3 if channels is None else channels)


for _spec in (
    DatasetSpec("digits", _digits, 1, DIGITS_MEAN, DIGITS_STD,
                description="scikit-learn's 8x8 handwritten digits (1,797 images, bundled)"),
    DatasetSpec("cifar10", _cifar("cifar10"), 3, CIFAR10_MEAN, CIFAR10_STD, needs_root=True,
                description="CIFAR-10: 32x32 RGB, 10 classes (torchvision's python files)"),
    DatasetSpec("cifar100", _cifar("cifar100"), 3, CIFAR100_MEAN, CIFAR100_STD,
                needs_root=True,
                description="CIFAR-100: 32x32 RGB, 100 classes (torchvision's python files)"),
    DatasetSpec("imagefolder", _imagefolder, None, IMAGENET_MEAN, IMAGENET_STD,
                needs_root=True,
                description="an ImageFolder tree: <root>/train/<class>/*, <root>/val/<class>/*"),
):
    register_dataset(_spec)


def compute_mean_std(
    dataset: Dataset,
    max_samples: int = 10_000,
    cache_path: str | os.PathLike | None = None,
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of a dataset of ``(uint8 image [C, H, W], label)``.

    Args:
        dataset: the dataset (images in 0..255).
        max_samples: use at most this many images, evenly spaced over the dataset
            (deterministic). Default 10,000.
        cache_path: JSON file to read the result from / write it to; the entry is reused
            only for the same dataset length and max_samples.

    Returns:
        ``(mean, std)``, tuples of C floats in [0, 1] units (population std over all
        pixels of the sampled images).
    """
    n = len(dataset)  # type: ignore[arg-type]
    if n == 0:
        raise ValueError("compute_mean_std: the dataset is empty")
    if max_samples < 1:
        raise ValueError(f"max_samples must be >= 1, got {max_samples}")
    tag = {"n": n, "max_samples": max_samples}
    if cache_path is not None and os.path.isfile(cache_path):
        try:
            with open(cache_path) as f:
                stored = json.load(f)
            if stored.get("tag") == tag:
                return tuple(stored["mean"]), tuple(stored["std"])
        except (OSError, ValueError, KeyError):
            pass
    m = min(n, max_samples)
    idx = np.linspace(0, n - 1, m).round().astype(np.int64)
    total: torch.Tensor | None = None
    sq: torch.Tensor | None = None
    count = 0
    images = getattr(dataset, "images", None)
    for start in range(0, m, 1024):
        chunk = idx[start:start + 1024]
        if isinstance(images, torch.Tensor):
            batch = images[torch.from_numpy(chunk)].double()
            s = batch.sum(dim=(0, 2, 3))
            s2 = (batch * batch).sum(dim=(0, 2, 3))
            pix = batch.shape[0] * batch.shape[2] * batch.shape[3]
        else:
            s = s2 = torch.zeros((), dtype=torch.float64)
            pix = 0
            for i in chunk.tolist():
                img = dataset[i][0].double()
                s = s + img.sum(dim=(1, 2))
                s2 = s2 + (img * img).sum(dim=(1, 2))
                pix += img.shape[1] * img.shape[2]
        total = s if total is None else total + s
        sq = s2 if sq is None else sq + s2
        count += pix
    assert total is not None and sq is not None  # m >= 1: at least one chunk
    mean_t = total / count
    std_t = (sq / count - mean_t * mean_t).clamp_min(0).sqrt()
    mean = tuple(float(v) / 255.0 for v in mean_t)
    std = tuple(float(v) / 255.0 for v in std_t)
    if cache_path is not None:
        atomic_write_text(cache_path, json.dumps({"tag": tag, "mean": mean, "std": std}))
    return mean, std
