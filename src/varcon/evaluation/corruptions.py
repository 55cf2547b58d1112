"""Common image corruptions (Hendrycks & Dietterich 2019, ImageNet-C / CIFAR-10-C).

Two sources of corrupted test images:

* **generated**: :func:`corrupt` applies one of the 19 corruptions of the ``imagecorruptions``
  package (optional dependency, ``pip install "varcon[robustness]"``) at a severity 1..5;
  :class:`CorruptedDataset` does it lazily, per item, for a whole varcon dataset.
* **published**: :class:`CifarCDataset` reads CIFAR-10-C / CIFAR-100-C (``<corruption>.npy`` +
  ``labels.npy``), :class:`ImageNetCDataset` reads ImageNet-C
  (``<root>/<corruption>/<severity>/<class>/<image>``); :func:`detect_corruption_layout` and
  :func:`available_corruptions` tell which one a folder holds.

Every dataset here yields ``(image, label)`` with ``image`` a uint8 tensor [C, H, W], like the
datasets of :mod:`varcon.data`.

Generated corruptions use the ImageNet-C parameters at every image size (the library has no
others): blur radii, frost textures and snow flakes are in absolute pixels calibrated for
224 x 224. The published CIFAR-10-C was made with separate, milder constants for all 19
corruptions (e.g. Gaussian noise sigma 0.04-0.10 there against 0.08-0.38 here, defocus disk
radius 0.3-1.5 px against 3-10 px). Accuracies on generated CIFAR-size corruptions are
therefore comparable between runs of this project, not with published CIFAR-10-C numbers;
use the published files (:class:`CifarCDataset`) for those.
"""

from __future__ import annotations

import functools
import math
import os
import threading
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision.datasets.folder import IMG_EXTENSIONS, make_dataset

from varcon._text import shorten
from varcon.data import decode_image_file
from varcon.data.datasets import PathArray

__all__ = [
    "CORRUPTIONS",
    "EXTRA_CORRUPTIONS",
    "SEVERITIES",
    "CifarCDataset",
    "CorruptedDataset",
    "ImageNetCDataset",
    "available_corruptions",
    "corrupt",
    "detect_corruption_layout",
]

#: the 15 ImageNet-C corruptions, in the paper's order (noise, blur, weather, digital)
CORRUPTIONS: tuple[str, ...] = (
    "gaussian_noise", "shot_noise", "impulse_noise",
    "defocus_blur", "glass_blur", "motion_blur", "zoom_blur",
    "snow", "frost", "fog", "brightness",
    "contrast", "elastic_transform", "pixelate", "jpeg_compression",
)
#: the 4 held-out ("validation") corruptions of the paper
EXTRA_CORRUPTIONS: tuple[str, ...] = ("speckle_noise", "gaussian_blur", "spatter", "saturate")
SEVERITIES: tuple[int, ...] = (1, 2, 3, 4, 5)

_ALL = CORRUPTIONS + EXTRA_CORRUPTIONS
# The library refuses images with a side below this (its parameters assume at least this size).
_MIN_SIDE = 32
# Per-pixel maps, and pixelate (blocks of a fixed fraction of the image side): defined at any
# size, so small images get them at their own size (nearest upsampling would even make
# pixelate a no-op at some severities: its blocks would fall on the upsampled blocks).
_SIZE_FREE = frozenset({"gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise",
                        "brightness", "contrast", "saturate", "pixelate"})
# Noise drawn independently for every sample (pixel and channel): for a 1-channel image the
# corruption of its one sample is one channel of the 3-channel result.
_PER_SAMPLE_NOISE = frozenset({"gaussian_noise", "shot_noise", "impulse_noise",
                               "speckle_noise"})
# The library seeds these two from fresh OS entropy unless given a ``seed`` argument.
_OWN_SEED = frozenset({"impulse_noise", "glass_blur"})
# These draw no random numbers at all (the tests check that the global RNG is untouched):
# no RNG save/restore for them (np.random.get_state + set_state cost ~0.25 ms per call).
_DETERMINISTIC = frozenset({"defocus_blur", "zoom_blur", "brightness", "contrast", "pixelate",
                            "jpeg_compression", "gaussian_blur", "saturate"})
# ITU-R 601-2 luma (PIL's "L" conversion and the library's own rgb2gray).
_LUMA = np.array([0.299, 0.587, 0.114])

_INSTALL_HINT = 'pip install "varcon[robustness]"'
# np.random's global state is process-wide: seeded calls from several threads take turns.
_RNG_LOCK = threading.Lock()


def _library() -> Any:
    """The ``imagecorruptions`` module, imported on first use (it pulls numba, OpenCV, skimage)."""
    try:
        import imagecorruptions
    except ImportError as e:
        raise ImportError(
            f"generated image corruptions need the optional package imagecorruptions-imaug "
            f"({type(e).__name__}: {e}); install it with: {_INSTALL_HINT}",
            name="imagecorruptions",
        ) from e
    return imagecorruptions


def _check_name(name: str) -> None:
    if name not in _ALL:
        raise ValueError(
            f"unknown corruption {name!r}; valid names: {', '.join(CORRUPTIONS)} "
            f"(and the extra {', '.join(EXTRA_CORRUPTIONS)})"
        )


def _check_severity(severity: int) -> None:
    if isinstance(severity, bool) or not isinstance(severity, (int, np.integer)) or \
            int(severity) not in SEVERITIES:
        raise ValueError(f"severity must be an integer in 1..5, got {severity!r}")


def _check_seed(seed: int | None) -> None:
    if seed is None:
        return
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer or None, got {seed!r}")


def _to_uint8(result: Any) -> np.ndarray:
    # The library returns float arrays in [0, 255] or PIL images; like its own corrupt() (and
    # the scripts that made CIFAR-10-C / ImageNet-C: np.uint8) floats are truncated.
    return np.asarray(result).astype(np.uint8)


# (image weight, frost weight) per severity: ImageNet-C's frost parameters.
_FROST_MIX = ((1.0, 0.4), (0.8, 0.6), (0.7, 0.7), (0.65, 0.7), (0.6, 0.75))
_FROST_FILES = ("frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg",
                "frost6.jpg")


@functools.lru_cache(maxsize=6)
def _frost_texture(index: int) -> np.ndarray:
    """The library's frost texture ``index`` as decoded by OpenCV, uint8 BGR [h, w, 3]."""
    import importlib.resources

    import cv2

    ref = importlib.resources.files("imagecorruptions") / "frost" / _FROST_FILES[index]
    with importlib.resources.as_file(ref) as path:
        texture = cv2.imread(str(path))
    if texture is None:
        raise RuntimeError(f"cannot read the frost texture {ref} of imagecorruptions; "
                           f"reinstall it: {_INSTALL_HINT}")
    texture.flags.writeable = False
    return texture


# Images up to the textures' size (315 x 485 .. 600 x 900) share one entry per texture;
# larger images need their own scale: a few sizes are kept (each texture up to a few MB).
@functools.lru_cache(maxsize=12)
def _frost_rescaled(index: int, width: int, height: int) -> np.ndarray:
    import cv2

    out = cv2.resize(_frost_texture(index), dsize=(width, height), interpolation=cv2.INTER_CUBIC)
    out.flags.writeable = False
    return out


def _frost(image: Any, severity: int) -> np.ndarray:
    """imagecorruptions' frost with its textures decoded and rescaled once per process.

    The library re-decodes a texture of up to 900 x 600 px and resizes it on every call
    (8-27 ms per 32 x 32 image here, ~20x its other corruptions); this makes the same random
    draws from np.random in the same order (texture, then crop row and column) and gives
    bit-identical output (tested against the library): the texture is scaled by
    1.1 * max(1, H / h, W / w) (bicubic), cropped at a random place to H x W, and mixed as
    ``clip(a * image + b * crop, 0, 255)`` with (a, b) = ``_FROST_MIX[severity - 1]``.
    """
    a, b = _FROST_MIX[severity - 1]
    index = int(np.random.randint(6))
    x = np.array(image)
    h, w = x.shape[:2]
    th, tw = _frost_texture(index).shape[:2]
    scale = max(1, h / th, w / tw) * 1.1
    texture = _frost_rescaled(index, math.ceil(tw * scale), math.ceil(th * scale))
    top = np.random.randint(0, texture.shape[0] - h)
    left = np.random.randint(0, texture.shape[1] - w)
    crop = texture[top:top + h, left:left + w][..., [2, 1, 0]]  # BGR -> RGB
    return np.clip(a * x + b * crop, 0, 255)


def _run(fn: Any, rgb: np.ndarray, name: str, severity: int, seed: int | None) -> np.ndarray:
    """One library call on uint8 [H, W, 3]; seeded by ``seed`` or by numpy's global RNG."""
    from PIL import Image

    pil = Image.fromarray(rgb)
    if name in _DETERMINISTIC:
        return _to_uint8(fn(pil, severity))
    if seed is None:
        kwargs = {}
        if name in _OWN_SEED:  # draw their seed from the global RNG so np.random.seed() holds
            kwargs["seed"] = int(np.random.randint(0, 2**32, dtype=np.int64))
        return _to_uint8(fn(pil, severity, **kwargs))
    # Three independent 32-bit words: numpy's global RNG, skimage's Generator (impulse_noise)
    # and numba's own RNG (glass_blur's pixel shuffle).
    words = np.random.SeedSequence(int(seed)).generate_state(3)
    kwargs = {"seed": int(words[1] if name == "impulse_noise" else words[2])} \
        if name in _OWN_SEED else {}
    with _RNG_LOCK:
        state = np.random.get_state()
        try:
            np.random.seed(int(words[0]))
            return _to_uint8(fn(pil, severity, **kwargs))
        finally:
            np.random.set_state(state)  # the caller's global RNG continues as if untouched


def corrupt(image: np.ndarray, name: str, severity: int, seed: int | None = None) -> np.ndarray:
    """Apply corruption ``name`` at ``severity`` (1..5) to one image.

    Args:
        image: uint8 [H, W, 3], [H, W, 1] or [H, W] (grayscale).
        name: one of :data:`CORRUPTIONS` or :data:`EXTRA_CORRUPTIONS`.
        severity: 1 (mildest) .. 5.
        seed: with an int, the result is a function of (image, name, severity, seed) alone,
            bit for bit; the caller's ``np.random`` state is saved and restored around the
            call. With ``None`` the randomness comes from numpy's global RNG (so
            ``np.random.seed`` makes it reproducible too).

    Returns:
        uint8 array of the input's shape.

    How: the ``imagecorruptions`` function of that name runs on the image as 3-channel RGB;
    its output is truncated to uint8 as the library's ``corrupt`` does (and identical to it
    for RGB images of at least 32 x 32 under the same global RNG state, apart from
    impulse_noise / glass_blur, which the library seeds from OS entropy).

    * Grayscale: the image is repeated to 3 channels and the result turned back into one:
      channel 0 for the per-sample noises (gaussian, shot, impulse, speckle: every channel
      is an independent draw of the 1-channel corruption; averaging would weaken them),
      ITU-R 601 luma ``0.299 R + 0.587 G + 0.114 B`` (rounded) otherwise, which keeps
      gray exactly gray and shows the colour of frost, spatter or saturate as brightness.
    * Images with a side below 32 px (the library's minimum; e.g. 8 x 8 digits): per-pixel
      corruptions (the four noises, brightness, contrast, saturate) and pixelate (blocks
      of a fixed fraction of the side) run at the image's own size. The other spatial ones
      run on the image upsampled by the smallest integer factor ``s`` with
      ``s * min(H, W) >= 32`` (nearest neighbour, so an uncorrupted image would come back
      exactly) and are box-averaged back over s x s blocks: an 8 x 8 digit is blurred,
      frosted, ... like a 32 x 32 image, then seen at 8 x 8.

    Randomness: the library draws from ``np.random``'s global (legacy) RNG, and from a seed
    argument in impulse_noise (a ``numpy.random.Generator``, via scikit-image) and
    glass_blur (numba's own RNG); Python's ``random`` is not used. All three are set from
    ``seed``. Thread safety: seeded calls hold a lock while they own the global RNG; other
    threads drawing from ``np.random`` at the same time would still interleave with them.

    Raises:
        ValueError: unknown ``name``, ``severity`` outside 1..5, bad shape, negative seed.
        TypeError: ``image`` is not a uint8 numpy array.
        ImportError: ``imagecorruptions`` is not installed.
    """
    _check_name(name)
    _check_severity(severity)
    _check_seed(seed)
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        raise TypeError(f"image must be a uint8 numpy array [H, W, C], got "
                        f"{type(image).__name__} {getattr(image, 'dtype', '')}")
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3)):
        raise ValueError(f"image must be [H, W], [H, W, 1] or [H, W, 3], got {image.shape}")
    h, w = image.shape[:2]
    if h < 1 or w < 1:
        raise ValueError(f"image is empty: {image.shape}")
    library = _library()
    fn = _frost if name == "frost" else library.corruption_dict[name]

    gray = image.ndim == 2 or image.shape[2] == 1
    rgb = np.repeat(image.reshape(h, w, 1), 3, axis=2) if gray else np.ascontiguousarray(image)
    scale = 1 if min(h, w) >= _MIN_SIDE or name in _SIZE_FREE else math.ceil(_MIN_SIDE / min(h, w))
    if scale > 1:
        big = np.repeat(np.repeat(rgb, scale, axis=0), scale, axis=1)
        out = _run(fn, big, name, int(severity), seed)
        out = out.reshape(h, scale, w, scale, 3).mean(axis=(1, 3))
        out = np.rint(out).astype(np.uint8)
    else:
        out = _run(fn, rgb, name, int(severity), seed)
    if out.shape != (h, w, 3):  # the library promises this; fail loudly rather than reshape
        raise RuntimeError(f"imagecorruptions {name} returned {out.shape} for {rgb.shape}")
    if gray:
        if name in _PER_SAMPLE_NOISE:
            out = out[:, :, 0]
        else:
            out = np.rint(out @ _LUMA).clip(0, 255).astype(np.uint8)
        out = out.reshape(image.shape)
    return np.ascontiguousarray(out)


def _item_seed(seed: int, name: str, severity: int, index: int) -> int:
    """A 32-bit seed that depends only on (seed, name, severity, index)."""
    # crc32, unlike hash(), is the same in every process (no PYTHONHASHSEED salt).
    entropy = [int(seed), zlib.crc32(name.encode()), int(severity), int(index)]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


class CorruptedDataset(Dataset):
    """A varcon dataset with one corruption applied to every image, on access.

    Args:
        dataset: yields ``(uint8 image [C, H, W], label)``.
        name: corruption name (:data:`CORRUPTIONS` / :data:`EXTRA_CORRUPTIONS`).
        severity: 1..5.
        seed: base seed; image ``i`` is corrupted with a seed derived from
            ``(seed, name, severity, i)``, so its result does not depend on access order,
            batch or DataLoader worker.

    Yields ``(uint8 image [C, H, W], label)`` of the wrapped image's shape. Nothing is
    precomputed: corruption runs in the DataLoader workers, one image at a time. ``info``
    and ``targets`` of the wrapped dataset are passed through when present.

    For glass_blur the constructor compiles the library's numba kernel (4-5 s, once per
    process), so that forked DataLoader workers start with it compiled; with the "spawn"
    start method each worker still compiles it once.
    """

    def __init__(self, dataset: Dataset, name: str, severity: int, seed: int = 0) -> None:
        _check_name(name)
        _check_severity(severity)
        if seed is None:
            raise ValueError("CorruptedDataset needs an integer seed (None would make items "
                             "depend on worker and order)")
        _check_seed(seed)
        _library()  # fail here, not in a worker, when the package is missing
        if name == "glass_blur":
            # numba compiles the library's pixel-shuffle kernel on first use (4-5 s). Doing it
            # here, in the process that builds the DataLoader, lets forked workers inherit the
            # compiled code instead of each compiling it again for every severity.
            corrupt(np.zeros((_MIN_SIDE, _MIN_SIDE, 3), np.uint8), name, 1, seed=0)
        self.dataset = dataset
        self.name = name
        self.severity = int(severity)
        self.seed = int(seed)

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if index < 0:
            index += len(self)
        image, label = self.dataset[index]
        if not isinstance(image, torch.Tensor) or image.dtype != torch.uint8 or image.ndim != 3:
            raise ValueError(f"CorruptedDataset needs uint8 [C, H, W] tensor images, got "
                             f"{type(image).__name__} {getattr(image, 'dtype', '')} "
                             f"{tuple(getattr(image, 'shape', ()))}")
        hwc = image.permute(1, 2, 0).numpy()
        out = corrupt(hwc, self.name, self.severity,
                      seed=_item_seed(self.seed, self.name, self.severity, index))
        return torch.from_numpy(out).permute(2, 0, 1).contiguous(), int(label)

    @property
    def info(self) -> Any:
        return self.dataset.info  # type: ignore[attr-defined]

    @property
    def targets(self) -> torch.Tensor:
        return self.dataset.targets  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- published sets

_CIFAR_C_LAYOUT = ("CIFAR-10-C / CIFAR-100-C layout: <root>/labels.npy and <root>/<corruption>.npy "
                   "(uint8 [5 * N, H, W, 3], severities 1..5 in order, N images each)")
_IMAGENET_C_LAYOUT = ("ImageNet-C layout: <root>/<corruption>/<severity 1..5>/<class folder>/"
                      "<image files>")


def _imagenet_c_severities(folder: Path) -> list[int]:
    return [s for s in SEVERITIES if (folder / str(s)).is_dir()]


def detect_corruption_layout(root: str | os.PathLike) -> Literal["cifar-c", "imagenet-c"]:
    """``"cifar-c"`` for ``<root>/labels.npy`` + ``<root>/<corruption>.npy`` files,
    ``"imagenet-c"`` for ``<root>/<corruption>/<severity>/<class>/<image>`` folders.

    Raises:
        ValueError: ``root`` is missing, holds neither layout (the message says which file or
            folder is missing), or holds both.
    """
    path = Path(root).expanduser()
    if not path.is_dir():
        raise ValueError(f"corruption benchmark folder {path} does not exist or is not a "
                         f"folder; expected the {_CIFAR_C_LAYOUT}, or the {_IMAGENET_C_LAYOUT}")
    npys = [n for n in _ALL if (path / f"{n}.npy").is_file()]
    has_labels = (path / "labels.npy").is_file()
    dirs = [n for n in _ALL if (path / n).is_dir()]
    if npys and dirs:
        raise ValueError(f"{path} holds both <corruption>.npy files ({npys[0]}.npy, CIFAR-C) and "
                         f"<corruption>/ folders ({dirs[0]}/, ImageNet-C); keep one layout per "
                         "folder")
    if npys:
        if not has_labels:
            raise ValueError(f"{path} has {npys[0]}.npy but no labels.npy; expected the "
                             f"{_CIFAR_C_LAYOUT}")
        return "cifar-c"
    if dirs:
        if not any(_imagenet_c_severities(path / d) for d in dirs):
            raise ValueError(f"{path / dirs[0]} has no severity folder 1..5 (looked for "
                             f"{path / dirs[0] / '1'}); expected the {_IMAGENET_C_LAYOUT}")
        return "imagenet-c"
    if has_labels:
        raise ValueError(f"{path} has labels.npy but no <corruption>.npy file (e.g. "
                         f"{path / 'gaussian_noise.npy'}); expected the {_CIFAR_C_LAYOUT}")
    seen = shorten(sorted(p.name for p in path.iterdir()), 8)
    raise ValueError(
        f"{path} holds no corruption benchmark (found: {seen or 'nothing'}); no "
        f"labels.npy + <corruption>.npy and no <corruption>/ folder named after one of "
        f"{', '.join(_ALL)}. Expected the {_CIFAR_C_LAYOUT}, or the {_IMAGENET_C_LAYOUT}"
    )


def available_corruptions(root: str | os.PathLike) -> list[str]:
    """Corruption names present under ``root``, in the order of ``CORRUPTIONS + EXTRA_CORRUPTIONS``.

    CIFAR-C: every ``<name>.npy``. ImageNet-C: every ``<name>/`` folder with at least one
    severity folder (a missing severity is reported by :class:`ImageNetCDataset`). Files and
    folders with other names are ignored.

    Raises:
        ValueError: as :func:`detect_corruption_layout`.
    """
    path = Path(root).expanduser()
    if detect_corruption_layout(path) == "cifar-c":
        return [n for n in _ALL if (path / f"{n}.npy").is_file()]
    return [n for n in _ALL if (path / n).is_dir() and _imagenet_c_severities(path / n)]


def _load_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read {path} as a .npy array ({type(e).__name__}: {e}); "
                         f"expected the {_CIFAR_C_LAYOUT}") from e


class CifarCDataset(Dataset):
    """One corruption and severity of CIFAR-10-C / CIFAR-100-C.

    Args:
        root: folder with ``labels.npy`` and ``<name>.npy``.
        name: corruption name.
        severity: 1..5.

    ``<name>.npy`` is uint8 [5 * N, H, W, 3] (N = 10000, H = W = 32 in the published sets),
    severity ``s`` in rows ``(s - 1) * N .. s * N - 1``. ``labels.npy`` holds N labels, or
    5 * N (the published files repeat them per severity), in which case severity ``s``'s block
    is used. The images are memory-mapped: item ``i`` reads one [H, W, 3] row.

    Yields ``(uint8 image [3, H, W], label)``; ``targets`` is a LongTensor [N].
    """

    def __init__(self, root: str | os.PathLike, name: str, severity: int) -> None:
        _check_name(name)
        _check_severity(severity)
        self.root = Path(root).expanduser()
        self.name = name
        self.severity = int(severity)
        self.path = self.root / f"{name}.npy"
        labels_path = self.root / "labels.npy"
        for p in (self.path, labels_path):
            if not p.is_file():
                raise ValueError(f"{p} does not exist; expected the {_CIFAR_C_LAYOUT}")
        images = _load_npy(self.path)
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] != 3:
            raise ValueError(f"{self.path} is {images.dtype} {images.shape}; expected uint8 "
                             f"[5 * N, H, W, 3] ({_CIFAR_C_LAYOUT})")
        if len(images) == 0 or len(images) % 5:
            raise ValueError(f"{self.path} has {len(images)} images, not a positive multiple "
                             "of 5 (N per severity, severities 1..5 in order)")
        n = len(images) // 5
        labels = _load_npy(labels_path)
        if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"{labels_path} is {labels.dtype} {labels.shape}; expected "
                             f"integer labels [N] or [5 * N]")
        if len(labels) == 5 * n:
            labels = labels[(self.severity - 1) * n: self.severity * n]
        elif len(labels) != n:
            raise ValueError(f"{labels_path} has {len(labels)} labels but {self.path} holds "
                             f"{n} images per severity ({len(images)} / 5); expected {n} or "
                             f"{5 * n} labels")
        self.targets = torch.from_numpy(np.array(labels, dtype=np.int64))
        self._offset = (self.severity - 1) * n
        self._n = n
        self._images: np.ndarray | None = images

    def _array(self) -> np.ndarray:
        if self._images is None:  # reopened after pickling (spawned DataLoader workers)
            self._images = _load_npy(self.path)
        return self._images

    def __getstate__(self) -> dict[str, Any]:
        # Pickling a memmap would copy the whole file into every worker: send the path only.
        state = self.__dict__.copy()
        state["_images"] = None
        return state

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if index < 0:
            index += self._n
        if not 0 <= index < self._n:
            raise IndexError(f"index {index} out of range for {self._n} images")
        row = np.array(self._array()[self._offset + index])  # reads H * W * 3 bytes
        return torch.from_numpy(row).permute(2, 0, 1).contiguous(), int(self.targets[index])


class ImageNetCDataset(Dataset):
    """One corruption and severity of ImageNet-C (``<root>/<name>/<severity>/<class>/<image>``).

    Args:
        root: the ImageNet-C folder.
        name: corruption name.
        severity: 1..5.
        class_names: the training classes in label order (``info.class_names`` of the
            training dataset, e.g. WordNet ids ``n01440764`` ... for an ImageNet folder tree);
            class folder ``c`` gets label ``class_names.index(c)``. Classes without a folder
            are simply absent (ImageNet-100 against a 1000-class ImageNet-C needs the 100
            folders only; see the error for the reverse).

    Yields ``(uint8 image [3, H, W], label)`` decoded per item with
    :func:`varcon.data.decode_image_file`; ``targets`` is a LongTensor [N].

    Raises:
        ValueError: missing folder, a class folder not in ``class_names``, no image.
    """

    def __init__(self, root: str | os.PathLike, name: str, severity: int,
                 class_names: Sequence[str]) -> None:
        _check_name(name)
        _check_severity(severity)
        self.root = Path(root).expanduser()
        self.name = name
        self.severity = int(severity)
        self.class_names = [str(c) for c in class_names]
        class_to_idx = {c: i for i, c in enumerate(self.class_names)}
        if len(class_to_idx) != len(self.class_names):
            raise ValueError("class_names has duplicates; labels would be ambiguous")
        folder = self.root / name / str(self.severity)
        if not folder.is_dir():
            missing = folder if (self.root / name).is_dir() else self.root / name
            raise ValueError(f"{missing} does not exist; expected the {_IMAGENET_C_LAYOUT}")
        present = sorted(e.name for e in os.scandir(folder) if e.is_dir())
        unknown = [c for c in present if c not in class_to_idx]
        if unknown:
            raise ValueError(
                f"{folder} has class folder(s) not among the {len(self.class_names)} training "
                f"classes: {shorten(unknown)}. Evaluate on a copy with only the training "
                "classes' folders, or pass the class_names the model was trained with."
            )
        samples = make_dataset(str(folder), {c: class_to_idx[c] for c in present},
                               extensions=IMG_EXTENSIONS, allow_empty=True)
        if not samples:
            raise ValueError(f"{folder} holds no image file in <class>/ folders (extensions "
                             f"{', '.join(IMG_EXTENSIONS)}); expected the {_IMAGENET_C_LAYOUT}")
        self.paths = PathArray([p for p, _ in samples])  # read by workers: no str objects
        self.targets = torch.tensor([t for _, t in samples], dtype=torch.long)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path = self.paths[index]
        try:
            image = decode_image_file(path)
        except (OSError, RuntimeError, ValueError) as e:
            raise ValueError(f"cannot decode image file {path}: {e}; replace or remove it") from e
        return image, int(self.targets[index])
