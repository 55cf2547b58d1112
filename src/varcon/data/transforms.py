"""Augmentations on uint8 image tensors, built from ``torchvision.transforms.v2``.

Each transform is a small class with its parameters in the constructor. Called on ONE
uint8 tensor [C, H, W] (C = 1 or 3), it returns a float32 tensor [C, S, S] normalised
by ``mean``/``std`` (given in [0, 1] units). All randomness comes from torch's global
RNG, so ``TransformedDataset`` with ``(index, seed)`` keys makes it repeatable per item.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from typing import cast

import torch
from torch.utils.data import Dataset, default_collate, get_worker_info
from torchvision.transforms import v2

from .batched import (
    SimAugmentParams,
    apply_simaugment_batch,
    draw_simaugment_params,
    draw_view_rows,
)
from .datasets import SMALL_IMAGE_MAX, DatasetInfo, EncodedImage, ImageFileDataset
from .views import ViewKernel, _normalize, normalize_uint8

__all__ = [
    "AutoAugmentTransform",
    "EvalTransform",
    "LinearAugment",
    "MultiView",
    "RandAugmentTransform",
    "SimAugment",
    "TransformedDataset",
    "ViewBatch",
    "build_transform",
]


def _check_stats(mean: Sequence[float], std: Sequence[float]) -> tuple[list[float], list[float]]:
    mean, std = [float(m) for m in mean], [float(s) for s in std]
    if len(mean) != len(std) or not mean:
        raise ValueError(f"mean and std need the same number (>= 1) of channel values, got "
                         f"{mean} and {std}")
    if any(s <= 0 for s in std):
        raise ValueError(f"std values must be > 0, got {std}")
    return mean, std


def _finish(mean: Sequence[float], std: Sequence[float]) -> list[v2.Transform]:
    mean, std = _check_stats(mean, std)
    return [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)]


def _check_size(image_size: int) -> int:
    if not isinstance(image_size, int) or image_size < 1:
        raise ValueError(f"image_size must be a positive int, got {image_size!r}")
    return image_size


def _check_p(name: str, p: float) -> float:
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {p}")
    return float(p)


def _check_scale(scale: Sequence[float]) -> tuple[float, float]:
    lo, hi = (float(v) for v in scale)
    if not 0.0 < lo <= hi <= 1.0:
        raise ValueError(f"crop_scale must satisfy 0 < min <= max <= 1, got {tuple(scale)}")
    return lo, hi


class _Composed:
    """Base: holds a ``v2.Compose`` in ``self.pipeline``; calling applies it."""

    pipeline: v2.Compose

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        if image.dtype != torch.uint8 or image.ndim != 3:
            raise ValueError(f"{type(self).__name__} expects one uint8 image [C, H, W], got "
                             f"{image.dtype} {tuple(image.shape)}")
        return self.pipeline(image)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.pipeline})"


class SimAugment(_Composed):
    """SupCon's "SimAugment" (the SimCLR recipe).

    RandomResizedCrop(image_size, scale=crop_scale) -> RandomHorizontalFlip(hflip_p) ->
    RandomApply(ColorJitter(*jitter), p=jitter_p) -> RandomGrayscale(grayscale_p) ->
    float32 in [0, 1] -> Normalize(mean, std).

    Args:
        image_size: output side S; output float32 [C, S, S].
        crop_scale: area fraction range of the crop. Default (0.2, 1.0).
        hflip_p: horizontal flip probability. Default 0.5.
        jitter: (brightness, contrast, saturation, hue) strengths. Default
            (0.4, 0.4, 0.4, 0.1): factors in [0.6, 1.4], hue shift in [-0.1, 0.1].
        jitter_p: probability of applying the colour jitter. Default 0.8.
        grayscale_p: probability of converting to grayscale. Default 0.2.
        mean, std: per-channel normalisation, [0, 1] units (required).
        reduced_decode: in :meth:`views_from_file`, decode a JPEG at 1/2, 1/4 or 1/8
            scale when every view's crop still has >= image_size pixels per side at
            that scale. Default True (False: always decode at full size).

    On 1-channel images saturation, hue and grayscale are no-ops.

    :meth:`apply_batch` / :meth:`apply_views` apply the same distribution to a batch, one
    parameter draw per image and view: for image_size <= 64 with batched pixel work
    (:mod:`varcon.data.batched`), above that one view at a time on reused buffers
    (:mod:`varcon.data.views`, rounded to uint8 once before normalising).
    :meth:`views_from_file` draws the crops from a JPEG's header before decoding it.
    """

    def __init__(
        self,
        image_size: int,
        *,
        crop_scale: Sequence[float] = (0.2, 1.0),
        hflip_p: float = 0.5,
        jitter: Sequence[float] = (0.4, 0.4, 0.4, 0.1),
        jitter_p: float = 0.8,
        grayscale_p: float = 0.2,
        mean: Sequence[float],
        std: Sequence[float],
        reduced_decode: bool = True,
    ) -> None:
        image_size = _check_size(image_size)
        if len(jitter) != 4 or any(j < 0 for j in jitter) or jitter[3] > 0.5:
            raise ValueError("jitter must be 4 values (brightness, contrast, saturation, hue) "
                             f">= 0 with hue <= 0.5, got {tuple(jitter)}")
        b, c, s, h = (float(j) for j in jitter)
        self.image_size = image_size
        self.crop_scale = _check_scale(crop_scale)
        self.hflip_p = _check_p("hflip_p", hflip_p)
        self.jitter = (b, c, s, h)
        self.jitter_p = _check_p("jitter_p", jitter_p)
        self.grayscale_p = _check_p("grayscale_p", grayscale_p)
        self.mean, self.std = _check_stats(mean, std)
        self.reduced_decode = bool(reduced_decode)
        self.kernel = ViewKernel(image_size, self.jitter)
        self.pipeline = v2.Compose([
            v2.RandomResizedCrop(image_size, scale=self.crop_scale, antialias=True),
            v2.RandomHorizontalFlip(_check_p("hflip_p", hflip_p)),
            v2.RandomApply([v2.ColorJitter(b, c, s, h)], p=_check_p("jitter_p", jitter_p)),
            v2.RandomGrayscale(_check_p("grayscale_p", grayscale_p)),
            *_finish(mean, std),
        ])

    def apply_batch(self, images: torch.Tensor,
                    generators: Sequence[torch.Generator | None] | None = None,
                    *, normalize: bool = True) -> torch.Tensor:
        """Augment a batch: uint8 [N, C, H, W] -> float32 [N, C, S, S].

        Each image gets its own random parameters, drawn from the same distributions as
        :meth:`__call__` (from ``generators[k]`` for image k when given, else from the
        global torch RNG). ``normalize=False``: uint8 views, to be finished by
        :func:`varcon.data.views.normalize_uint8`.
        """
        return self.apply_views(images, 1, generators, normalize=normalize)[:, 0]

    def draw(self, n: int, height: int, width: int,
             generators: Sequence[torch.Generator | None] | None = None) -> SimAugmentParams:
        """Parameters of ``n`` views of a height x width image (row k from
        ``generators[k]``, or the global RNG)."""
        return draw_simaugment_params(
            n, height, width, crop_scale=self.crop_scale, hflip_p=self.hflip_p,
            jitter=self.jitter, jitter_p=self.jitter_p, grayscale_p=self.grayscale_p,
            generators=generators)

    def apply_views(self, images: torch.Tensor, n_views: int,
                    generators: Sequence[torch.Generator | None] | None = None,
                    *, normalize: bool = True) -> torch.Tensor:
        """``n_views`` views of each image: uint8 [N, C, H, W] -> [N, n_views, C, S, S]
        (float32 normalised, or uint8 with ``normalize=False``).

        Image k's views are drawn one after the other from ``generators[k]`` when given
        (else from the global RNG): the draws of ``MultiView(SimAugment)``.
        """
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(f"apply_batch expects uint8 images [N, C, H, W], got "
                             f"{images.dtype} {tuple(images.shape)}")
        if generators is not None and len(generators) != len(images):
            raise ValueError(f"{len(generators)} generators for {len(images)} images")
        n, _, height, width = images.shape
        gens = None if generators is None else [g for g in generators for _ in range(n_views)]
        params = self.draw(n * n_views, height, width, gens)
        if self.image_size <= SMALL_IMAGE_MAX:
            reps = images.repeat_interleave(n_views, dim=0) if n_views > 1 else images
            out = apply_simaugment_batch(reps, params, image_size=self.image_size,
                                         jitter=self.jitter, mean=self.mean, std=self.std,
                                         normalize=normalize)
        else:
            out = self.render(images, params, views_per_image=n_views)
            if normalize:
                out = normalize_uint8(out, self.mean, self.std)
        return out.view(n, n_views, *out.shape[1:])

    def render(self, images: torch.Tensor, params: SimAugmentParams | Sequence[tuple], *,
               views_per_image: int = 1, out: torch.Tensor | None = None) -> torch.Tensor:
        """Views from drawn parameters, one at a time (:class:`varcon.data.views.ViewKernel`).

        Args:
            images: uint8 [N, C, H, W] (view r uses image r // views_per_image) or one
                image [C, H, W] (all views).
            params: M views' parameters (:class:`SimAugmentParams`, or the tuples of
                :func:`varcon.data.batched.draw_view_rows`), crop boxes in the images'
                coordinates.
            out: where to write, uint8 [M, C, S, S] (allocated when None).

        Returns:
            uint8 [M, C, S, S], rounded once after the colour adjustments.
        """
        rows = _rows_of(params) if isinstance(params, SimAugmentParams) else params
        size = self.image_size
        if out is None:
            out = torch.empty(len(rows), images.shape[-3], size, size, dtype=torch.uint8)
        single = images.ndim == 3
        # channels-last uint8 (how JPEGs decode) takes torch's vectorised resize kernel
        if single and not images.permute(1, 2, 0).is_contiguous():
            images = images.permute(1, 2, 0).contiguous().permute(2, 0, 1)
        elif not single and not images.is_contiguous(memory_format=torch.channels_last):
            images = images.contiguous(memory_format=torch.channels_last)
        for r, (box, flip, jitter, factors, order, gray) in enumerate(rows):
            self.kernel(images if single else images[r // views_per_image], box, flip, jitter,
                        factors, order, gray, out=out[r])
        return out

    def views_from_file(self, encoded: EncodedImage, n_views: int,
                        generator: torch.Generator | None = None,
                        out: torch.Tensor | None = None) -> torch.Tensor:
        """``n_views`` uint8 views [n_views, 3, S, S] of an undecoded image file.

        The parameters are drawn first, in the image's own coordinates (from the JPEG
        header; other formats are decoded first), with the same values as
        :meth:`apply_views` draws. With ``reduced_decode``, the JPEG is then decoded at
        the smallest scale 1/r (r in 8, 4, 2) at which every crop keeps >= S pixels per
        side, and each crop box is mapped to that scale (outwards to whole pixels: less
        than one reduced pixel more per side). Otherwise, and whenever no crop allows it,
        the full image is decoded and the result equals :meth:`apply_views` on it.
        """
        gens = None if generator is None else [generator] * n_views
        if encoded.size is None:  # not a JPEG: its size needs a decode
            image = encoded.decode()
            return self.render(image, self._draw_rows(n_views, image.shape[1], image.shape[2],
                                                      gens), out=out)
        height, width = encoded.size
        rows = self._draw_rows(n_views, height, width, gens)
        reduce = 1
        if self.reduced_decode:
            smallest = min(min(row[0][2], row[0][3]) for row in rows)
            reduce = next((r for r in (8, 4, 2) if smallest >= r * self.image_size), 1)
        image = encoded.decode(reduce)
        scaled = (image.shape[1], image.shape[2])
        if reduce > 1:
            rows = [(_scale_box(row[0], (height, width), scaled), *row[1:]) for row in rows]
        elif scaled != (height, width):
            raise ValueError(f"{encoded.path}: the JPEG header says {width}x{height}, the "
                             f"decoded image is {scaled[1]}x{scaled[0]}")
        return self.render(image, rows, out=out)

    def _draw_rows(self, n: int, height: int, width: int,
                   generators: Sequence[torch.Generator | None] | None) -> list[tuple]:
        return draw_view_rows(
            n, height, width, crop_scale=self.crop_scale, hflip_p=self.hflip_p,
            jitter=self.jitter, jitter_p=self.jitter_p, grayscale_p=self.grayscale_p,
            generators=generators)


def _rows_of(params: SimAugmentParams) -> list[tuple]:
    """SimAugmentParams -> the per-view tuples of draw_view_rows."""
    return list(zip(params.boxes.tolist(), params.flip.tolist(), params.jitter.tolist(),
                    params.factors.tolist(), params.order.tolist(), params.gray.tolist(),
                    strict=True))


def _scale_box(box: Sequence[int], size: tuple[int, int], scaled: tuple[int, int]
               ) -> list[int]:
    """Map a (top, left, height, width) box from an image of ``size`` (H, W) to the same
    image at ``scaled`` (H', W'): the smallest whole-pixel box that covers it."""
    (h0, w0), (h1, w1) = size, scaled
    top, left, height, width = box
    t, lft = top * h1 // h0, left * w1 // w0
    b = min(-(-(top + height) * h1 // h0), h1)
    rgt = min(-(-(left + width) * w1 // w0), w1)
    return [t, lft, b - t, rgt - lft]


class AutoAugmentTransform(_Composed):
    """RandomResizedCrop -> flip -> torchvision AutoAugment -> float + Normalize.

    Args:
        image_size: output side S; output float32 [C, S, S].
        policy: ``"imagenet"``, ``"cifar10"`` or ``"svhn"``; default None picks
            ``"cifar10"`` for image_size <= 64 and ``"imagenet"`` above.
        crop_scale: RandomResizedCrop area range. Default (0.2, 1.0).
        hflip_p: horizontal flip probability. Default 0.5.
        mean, std: per-channel normalisation, [0, 1] units (required).
    """

    def __init__(
        self,
        image_size: int,
        *,
        policy: str | None = None,
        crop_scale: Sequence[float] = (0.2, 1.0),
        hflip_p: float = 0.5,
        mean: Sequence[float],
        std: Sequence[float],
    ) -> None:
        image_size = _check_size(image_size)
        if policy is None:
            policy = "cifar10" if image_size <= SMALL_IMAGE_MAX else "imagenet"
        policies = {"imagenet": v2.AutoAugmentPolicy.IMAGENET,
                    "cifar10": v2.AutoAugmentPolicy.CIFAR10, "svhn": v2.AutoAugmentPolicy.SVHN}
        if policy not in policies:
            raise ValueError(f"policy must be one of {sorted(policies)}, got {policy!r}")
        self.pipeline = v2.Compose([
            v2.RandomResizedCrop(image_size, scale=_check_scale(crop_scale), antialias=True),
            v2.RandomHorizontalFlip(_check_p("hflip_p", hflip_p)),
            v2.AutoAugment(policies[policy]),
            *_finish(mean, std),
        ])


class RandAugmentTransform(_Composed):
    """RandomResizedCrop -> flip -> torchvision RandAugment -> float + Normalize.

    Args:
        image_size: output side S; output float32 [C, S, S].
        num_ops: operations per image. Default 2.
        magnitude: strength, 0..num_magnitude_bins-1. Default 9.
        crop_scale: RandomResizedCrop area range. Default (0.2, 1.0).
        hflip_p: horizontal flip probability. Default 0.5.
        mean, std: per-channel normalisation, [0, 1] units (required).
    """

    def __init__(
        self,
        image_size: int,
        *,
        num_ops: int = 2,
        magnitude: int = 9,
        crop_scale: Sequence[float] = (0.2, 1.0),
        hflip_p: float = 0.5,
        mean: Sequence[float],
        std: Sequence[float],
    ) -> None:
        image_size = _check_size(image_size)
        if num_ops < 0 or not 0 <= magnitude < 31:
            raise ValueError(f"need num_ops >= 0 and 0 <= magnitude < 31, got {num_ops}, "
                             f"{magnitude}")
        self.pipeline = v2.Compose([
            v2.RandomResizedCrop(image_size, scale=_check_scale(crop_scale), antialias=True),
            v2.RandomHorizontalFlip(_check_p("hflip_p", hflip_p)),
            v2.RandAugment(num_ops=num_ops, magnitude=magnitude),
            *_finish(mean, std),
        ])


class LinearAugment(_Composed):
    """Train-time augmentation of the linear probe.

    image_size <= 64: RandomCrop(image_size, padding) -> flip; larger:
    RandomResizedCrop(image_size, scale=crop_scale) -> flip; then float + Normalize.

    Args:
        image_size: output side S; output float32 [C, S, S].
        crop_scale: RandomResizedCrop area range (large images). Default (0.08, 1.0).
        padding: zero padding of RandomCrop (small images). Default None = image_size // 8.
        hflip_p: horizontal flip probability. Default 0.5.
        mean, std: per-channel normalisation, [0, 1] units (required).
    """

    def __init__(
        self,
        image_size: int,
        *,
        crop_scale: Sequence[float] = (0.08, 1.0),
        padding: int | None = None,
        hflip_p: float = 0.5,
        mean: Sequence[float],
        std: Sequence[float],
    ) -> None:
        image_size = _check_size(image_size)
        if image_size <= SMALL_IMAGE_MAX:
            pad = image_size // 8 if padding is None else int(padding)
            crop: v2.Transform = v2.RandomCrop(image_size, padding=pad, pad_if_needed=True)
        else:
            crop = v2.RandomResizedCrop(image_size, scale=_check_scale(crop_scale),
                                        antialias=True)
        self.pipeline = v2.Compose([
            crop, v2.RandomHorizontalFlip(_check_p("hflip_p", hflip_p)), *_finish(mean, std)
        ])


class EvalTransform(_Composed):
    """Deterministic evaluation transform.

    image_size <= 64: images already image_size x image_size are only normalised (others
    are resized, shorter side, and centre-cropped to it); larger:
    Resize(int(image_size * resize_ratio)) -> CenterCrop(image_size). Then float +
    Normalize.

    Args:
        image_size: output side S; output float32 [C, S, S].
        resize_ratio: resize-before-crop ratio for large images. Default 256 / 224.
        mean, std: per-channel normalisation, [0, 1] units (required).
    """

    def __init__(
        self,
        image_size: int,
        *,
        resize_ratio: float = 256 / 224,
        mean: Sequence[float],
        std: Sequence[float],
    ) -> None:
        image_size = _check_size(image_size)
        self.image_size = image_size
        if resize_ratio < 1:
            raise ValueError(f"resize_ratio must be >= 1, got {resize_ratio}")
        self.small = image_size <= SMALL_IMAGE_MAX
        resize = image_size if self.small else int(image_size * resize_ratio)
        self.resize = v2.Compose([v2.Resize(resize, antialias=True), v2.CenterCrop(image_size)])
        self.pipeline = v2.Compose(_finish(mean, std))

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        if image.dtype != torch.uint8 or image.ndim != 3:
            raise ValueError(f"EvalTransform expects one uint8 image [C, H, W], got "
                             f"{image.dtype} {tuple(image.shape)}")
        if not (self.small and tuple(image.shape[-2:]) == (self.image_size, self.image_size)):
            image = self.resize(image)
        return self.pipeline(image)


_KINDS: dict[str, type[_Composed]] = {
    "simaugment": SimAugment,
    "autoaugment": AutoAugmentTransform,
    "randaugment": RandAugmentTransform,
    "linear": LinearAugment,
    "eval": EvalTransform,
}


def build_transform(
    kind: str,
    image_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    **params: object,
) -> Callable[[torch.Tensor], torch.Tensor]:
    """Build a transform by name.

    Args:
        kind: ``"simaugment"`` | ``"autoaugment"`` | ``"randaugment"`` | ``"linear"`` |
            ``"eval"``.
        image_size: output side S.
        mean, std: per-channel normalisation in [0, 1] units.
        **params: constructor overrides of the chosen class (e.g. ``hflip_p=0``);
            unknown names raise ValueError listing the valid ones.

    Returns:
        A callable: uint8 [C, H, W] -> float32 [C, S, S].
    """
    if kind not in _KINDS:
        raise ValueError(f"unknown transform {kind!r}; choose one of {sorted(_KINDS)}")
    cls = _KINDS[kind]
    valid = [n for n in inspect.signature(cls.__init__).parameters
             if n not in ("self", "image_size", "mean", "std")]
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise ValueError(f"{kind}: unknown parameter(s) {unknown}; valid: {valid}")
    factory: Callable[..., _Composed] = cls  # (image_size, *, mean, std, **params)
    return factory(image_size, mean=mean, std=std, **params)


class MultiView:
    """Apply ``transform`` ``n_views`` times, each with its own random draws.

    Args:
        transform: uint8 [C, H, W] -> float [C, S, S].
        n_views: number of views. Default 2.

    Returns (when called) a tensor [n_views, C, S, S].
    """

    def __init__(self, transform: Callable[[torch.Tensor], torch.Tensor], n_views: int = 2
                 ) -> None:
        if n_views < 1:
            raise ValueError(f"n_views must be >= 1, got {n_views}")
        self.transform = transform
        self.n_views = n_views

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        return torch.stack([self.transform(image) for _ in range(self.n_views)])

    @property
    def batchable(self) -> bool:
        """True when the wrapped transform has a batched ``apply_batch``."""
        return hasattr(self.transform, "apply_batch")

    def apply_batch(self, images: torch.Tensor,
                    generators: Sequence[torch.Generator | None] | None = None,
                    *, normalize: bool = True) -> torch.Tensor:
        """uint8 [N, C, H, W] -> [N, n_views, C, S, S].

        Uses the wrapped transform's ``apply_batch`` when it has one (image k's views
        drawn from ``generators[k]`` when given); otherwise calls it per image and view
        (under a torch seed drawn from ``generators[k]`` when given).
        ``normalize=False`` (SimAugment only): uint8 views.
        """
        v = self.n_views
        if isinstance(self.transform, SimAugment):
            return self.transform.apply_views(images, v, generators, normalize=normalize)
        if not normalize:
            raise ValueError("normalize=False needs a SimAugment transform")
        if not self.batchable:
            if generators is None:
                return torch.stack([self(im) for im in images])
            outs = []
            state = torch.get_rng_state()
            try:
                for im, g in zip(images, generators, strict=True):
                    seed = int(torch.randint(2**62, (1,), generator=g))
                    torch.manual_seed(seed)
                    outs.append(self(im))
            finally:
                torch.set_rng_state(state)
            return torch.stack(outs)
        reps = images.repeat_interleave(v, dim=0)
        gens = None if generators is None else [g for g in generators for _ in range(v)]
        out = self.transform.apply_batch(reps, gens)  # type: ignore[attr-defined]
        return out.view(len(images), v, *out.shape[1:])

    def __repr__(self) -> str:
        return f"MultiView({self.transform!r}, n_views={self.n_views})"


class TransformedDataset(Dataset):
    """Wraps a dataset of ``(image, label)``; yields ``(transform(image), label)``.

    Args:
        dataset: yields (uint8 image [C, H, W], int label).
        transform: applied to the image.
        uint8_views: with a SimAugment transform (or ``MultiView`` of one), yield the
            views as uint8 (rounded, not normalised): 4x fewer bytes from the DataLoader
            workers and to the accelerator. Finish them with :meth:`finish` where they
            are used (``finish(images.to(device))``). Other transforms ignore it. Default
            False: float32 views, normalised.
        labels: optional LongTensor [len(dataset)] yielded instead of the dataset's labels
            (-1 for an image whose label is hidden: self- and semi-supervised pre-training,
            :func:`varcon.data.labels.partial_labels`).

    ``targets`` (``labels`` when given) and ``info`` of the wrapped dataset are passed
    through when present.

    Fast paths: a DataLoader with batches (``batch_size`` or a ``batch_sampler``) calls
    ``__getitems__`` with the whole batch; when the transform has ``apply_batch``
    (:class:`SimAugment`, ``MultiView(SimAugment)``), the batch is augmented at once,
    images of one size together (same per-image distribution). On an
    :class:`~varcon.data.ImageFileDataset` (large images decoded per access), SimAugment
    draws each item's crops from the file header and decodes the file once for all its
    views (at reduced scale when the crops allow, :meth:`SimAugment.views_from_file`).
    Keys may also be ``(index, seed)`` pairs (``varcon.data.sampling.EpochBatchSampler``):
    each item's augmentation is then drawn from its own seed, independent of batch and
    worker, so the same seed gives bit-identical views. On image files the batch comes back
    as a :class:`ViewBatch`, built in shared memory inside a DataLoader worker; pass
    ``collate_fn=TransformedDataset.collate`` so that it is not copied again.
    """

    def __init__(self, dataset: Dataset, transform: Callable[[torch.Tensor], torch.Tensor],
                 *, uint8_views: bool = False, labels: torch.Tensor | None = None) -> None:
        if labels is not None and len(labels) != len(dataset):  # type: ignore[arg-type]
            raise ValueError(f"labels has {len(labels)} entries for a dataset of "
                             f"{len(dataset)} images")  # type: ignore[arg-type]
        self.dataset = dataset
        self.labels = None if labels is None else torch.as_tensor(labels, dtype=torch.long)
        self.transform = transform
        self._sim, self._n_views = _simaugment_of(transform)
        self.uint8_views = bool(uint8_views) and self._sim is not None
        self._stats: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def finish(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 views (``uint8_views``) -> float32 normalised by the transform's mean/std,
        on the tensor's device (asynchronously: mean/std are kept there, so no
        host-device copy per call); float views are returned as they are."""
        if images.dtype != torch.uint8 or self._sim is None:
            return images
        c = images.shape[-3]
        if len(self._sim.mean) not in (1, c) or len(self._sim.std) not in (1, c):
            return normalize_uint8(images, self._sim.mean, self._sim.std)  # names the error
        stats = self._stats.get(images.device)
        if stats is None:
            mean, std = (
                torch.tensor(v, dtype=torch.float32, device=images.device).view(-1, 1, 1)
                for v in (self._sim.mean, self._sim.std))
            stats = self._stats[images.device] = (mean, std)
        return _normalize(images, *stats)

    def __getstate__(self) -> dict:  # device tensors stay in this process
        state = self.__dict__.copy()
        state["_stats"] = {}
        return state

    def __getitem__(self, index: int | tuple[int, int]) -> tuple[torch.Tensor, int]:
        if isinstance(index, tuple) or self.uint8_views or (
                self._sim is not None and isinstance(self.dataset, ImageFileDataset)):
            return self.__getitems__([index])[0]
        image, label = self.dataset[index]
        if self.labels is not None:
            label = self.labels[index]
        return self.transform(image), int(label)

    def __getitems__(self, keys: Sequence[int | tuple[int, int]]
                     ) -> list[tuple[torch.Tensor, int]]:
        seeded = len(keys) > 0 and isinstance(keys[0], tuple)
        pairs = cast("Sequence[tuple[int, int]]", keys)  # (index, seed) keys when seeded
        indices = [k[0] for k in pairs] if seeded else cast("list[int]", list(keys))
        if self._sim is not None and isinstance(self.dataset, ImageFileDataset) and keys:
            return self._file_items(indices, [int(k[1]) for k in pairs] if seeded else None)
        items = [self.dataset[i] for i in indices]
        labels = ([int(lab) for _, lab in items] if self.labels is None
                  else self.labels[indices].tolist())
        images = [img for img, _ in items]
        if hasattr(self.transform, "apply_batch") and images:
            gens = ([torch.Generator().manual_seed(int(k[1])) for k in pairs]
                    if seeded else None)
            groups: dict[tuple[int, ...], list[int]] = {}  # images of one size go together
            for pos, im in enumerate(images):
                groups.setdefault(tuple(im.shape), []).append(pos)
            outs: list[torch.Tensor] = [torch.empty(0)] * len(images)
            kwargs = {"normalize": False} if self.uint8_views else {}
            for members in groups.values():
                batch = torch.stack([images[p] for p in members])
                g = None if gens is None else [gens[p] for p in members]
                out = self.transform.apply_batch(batch, g, **kwargs)
                for p, o in zip(members, out.unbind(0), strict=True):
                    outs[p] = o
            return list(zip(outs, labels, strict=True))
        if not seeded:
            return [(self.transform(im), lab) for im, lab in zip(images, labels, strict=True)]
        # Per-image transforms draw from the global CPU generator: re-seed it per item
        # (the CPU generator alone; torch.manual_seed would also re-seed every CUDA
        # device, ~100x slower) and restore the caller's state afterwards.
        generator = torch.random.default_generator
        state = generator.get_state()
        results = []
        try:
            for im, lab, key in zip(images, labels, pairs, strict=True):
                generator.manual_seed(int(key[1]))
                results.append((self.transform(im), lab))
        finally:
            generator.set_state(state)
        return results

    def _file_items(self, indices: list[int], seeds: list[int] | None) -> ViewBatch:
        """SimAugment views of ImageFileDataset items: header, draws, one decode per file.

        The batch is written where it will travel: in a DataLoader worker, straight into
        shared memory (with :meth:`collate` nothing is copied again). Float views are
        normalised item by item while their uint8 views are in cache.
        """
        sim, n_views = self._sim, self._n_views or 1
        ds: ImageFileDataset = self.dataset  # type: ignore[assignment]
        size = sim.image_size  # type: ignore[union-attr]
        shape = (len(indices), n_views, 3, size, size)
        out = _batch_tensor(shape, torch.uint8 if self.uint8_views else torch.float32)
        views = out if self.uint8_views else torch.empty(shape[1:], dtype=torch.uint8)
        for pos, index in enumerate(indices):
            gen = None if seeds is None else torch.Generator().manual_seed(seeds[pos])
            sim.views_from_file(ds.encoded(index), n_views, gen,  # type: ignore[union-attr]
                                out=out[pos] if self.uint8_views else views)
            if not self.uint8_views:
                normalize_uint8(views, sim.mean, sim.std, out=out[pos])  # type: ignore[union-attr]
        if self._n_views is None:  # a bare SimAugment: one view [C, S, S] per item
            out = out[:, 0]
        targets = ds.targets if self.labels is None else self.labels
        return ViewBatch(out, targets[indices])

    @staticmethod
    def collate(batch: Sequence) -> object:
        """A DataLoader ``collate_fn``: a :class:`ViewBatch` becomes ``[views, labels]``
        as it is (no copy), anything else goes through ``default_collate``."""
        if isinstance(batch, ViewBatch):
            return [batch.views, batch.labels]
        return default_collate(cast(list, batch))

    @property
    def targets(self) -> torch.Tensor:
        if self.labels is not None:
            return self.labels
        return self.dataset.targets  # type: ignore[attr-defined]

    @property
    def info(self) -> DatasetInfo:
        return self.dataset.info  # type: ignore[attr-defined]


class ViewBatch(list):
    """What :meth:`TransformedDataset.__getitems__` returns for image files: the list of
    ``(views, label)`` pairs any collate function expects, holding the whole batch as
    ``views`` ([B, V, C, S, S] or [B, C, S, S]) and ``labels`` (LongTensor [B]) for
    :meth:`TransformedDataset.collate`."""

    def __init__(self, views: torch.Tensor, labels: torch.Tensor) -> None:
        super().__init__(zip(views.unbind(0), labels.tolist(), strict=True))
        self.views = views
        self.labels = labels


def _batch_tensor(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """An uninitialised tensor; in a DataLoader worker, in shared memory (as
    ``default_collate`` allocates its batches), so that sending it copies nothing."""
    if get_worker_info() is None:
        return torch.empty(shape, dtype=dtype)
    elem = torch.empty(0, dtype=dtype)
    numel = math.prod(shape)
    try:
        storage = elem._typed_storage()._new_shared(numel, device="cpu")
    except (AttributeError, RuntimeError):  # private API moved: a plain tensor still works
        return torch.empty(shape, dtype=dtype)
    return elem.new(storage).view(shape)


def _simaugment_of(transform: object) -> tuple[SimAugment | None, int | None]:
    """(the SimAugment, n_views) of SimAugment (n_views None) or MultiView(SimAugment)."""
    if isinstance(transform, SimAugment):
        return transform, None
    if isinstance(transform, MultiView) and isinstance(transform.transform, SimAugment):
        return transform.transform, transform.n_views
    return None, None
