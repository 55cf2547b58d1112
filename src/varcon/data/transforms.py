"""Augmentations on uint8 image tensors, built from ``torchvision.transforms.v2``.

Each transform is a small class with its parameters in the constructor. Called on ONE
uint8 tensor [C, H, W] (C = 1 or 3), it returns a float32 tensor [C, S, S] normalised
by ``mean``/``std`` (given in [0, 1] units). All randomness comes from torch's global
RNG, so ``TransformedDataset`` with ``(index, seed)`` keys makes it repeatable per item.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence

import torch
from torch.utils.data import Dataset
from torchvision.transforms import v2

from .batched import apply_simaugment_batch, draw_simaugment_params
from .datasets import SMALL_IMAGE_MAX, DatasetInfo

__all__ = [
    "AutoAugmentTransform",
    "EvalTransform",
    "LinearAugment",
    "MultiView",
    "RandAugmentTransform",
    "SimAugment",
    "TransformedDataset",
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

    On 1-channel images saturation, hue and grayscale are no-ops.

    :meth:`apply_batch` applies the same distribution to a batch (one parameter draw per
    image, batched pixel work): the fast path for small images.
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
        self.pipeline = v2.Compose([
            v2.RandomResizedCrop(image_size, scale=self.crop_scale, antialias=True),
            v2.RandomHorizontalFlip(_check_p("hflip_p", hflip_p)),
            v2.RandomApply([v2.ColorJitter(b, c, s, h)], p=_check_p("jitter_p", jitter_p)),
            v2.RandomGrayscale(_check_p("grayscale_p", grayscale_p)),
            *_finish(mean, std),
        ])

    def apply_batch(self, images: torch.Tensor,
                    generators: Sequence[torch.Generator | None] | None = None
                    ) -> torch.Tensor:
        """Augment a batch: uint8 [N, C, H, W] -> float32 [N, C, S, S].

        Each image gets its own random parameters, drawn from the same distributions as
        :meth:`__call__` (from ``generators[k]`` for image k when given, else from the
        global torch RNG).
        """
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(f"apply_batch expects uint8 images [N, C, H, W], got "
                             f"{images.dtype} {tuple(images.shape)}")
        if generators is not None and len(generators) != len(images):
            raise ValueError(f"{len(generators)} generators for {len(images)} images")
        n, _, height, width = images.shape
        params = draw_simaugment_params(
            n, height, width, crop_scale=self.crop_scale, hflip_p=self.hflip_p,
            jitter=self.jitter, jitter_p=self.jitter_p, grayscale_p=self.grayscale_p,
            generators=generators)
        return apply_simaugment_batch(images, params, image_size=self.image_size,
                                      jitter=self.jitter, mean=self.mean, std=self.std)


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
    return cls(image_size, mean=mean, std=std, **params)  # type: ignore[arg-type]


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
                    generators: Sequence[torch.Generator | None] | None = None
                    ) -> torch.Tensor:
        """uint8 [N, C, H, W] -> [N, n_views, C, S, S].

        Uses the wrapped transform's ``apply_batch`` when it has one (image k's views
        drawn from ``generators[k]`` when given); otherwise calls it per image and view
        (under a torch seed drawn from ``generators[k]`` when given).
        """
        v = self.n_views
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

    ``targets`` and ``info`` of the wrapped dataset are passed through when present.

    Fast path: a DataLoader with batches (``batch_size`` or a ``batch_sampler``) calls
    ``__getitems__`` with the whole batch; when the transform has ``apply_batch``
    (:class:`SimAugment`, ``MultiView(SimAugment)``), the batch is augmented at once,
    images of one size together (same per-image distribution). Keys may also be
    ``(index, seed)`` pairs (``varcon.data.sampling.EpochBatchSampler``): each item's
    augmentation is then drawn from its own seed, independent of batch and worker.
    """

    def __init__(self, dataset: Dataset, transform: Callable[[torch.Tensor], torch.Tensor]
                 ) -> None:
        self.dataset = dataset
        self.transform = transform

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int | tuple[int, int]) -> tuple[torch.Tensor, int]:
        if isinstance(index, tuple):
            return self.__getitems__([index])[0]
        image, label = self.dataset[index]
        return self.transform(image), int(label)

    def __getitems__(self, keys: Sequence[int | tuple[int, int]]
                     ) -> list[tuple[torch.Tensor, int]]:
        seeded = len(keys) > 0 and isinstance(keys[0], tuple)
        indices = [k[0] for k in keys] if seeded else list(keys)  # type: ignore[index]
        items = [self.dataset[i] for i in indices]
        labels = [int(lab) for _, lab in items]
        images = [img for img, _ in items]
        if hasattr(self.transform, "apply_batch") and images:
            gens = ([torch.Generator().manual_seed(int(k[1])) for k in keys]  # type: ignore[index]
                    if seeded else None)
            groups: dict[tuple[int, ...], list[int]] = {}  # images of one size go together
            for pos, im in enumerate(images):
                groups.setdefault(tuple(im.shape), []).append(pos)
            outs: list[torch.Tensor] = [torch.empty(0)] * len(images)
            for members in groups.values():
                batch = torch.stack([images[p] for p in members])
                g = None if gens is None else [gens[p] for p in members]
                out = self.transform.apply_batch(batch, g)  # type: ignore[attr-defined]
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
            for im, lab, key in zip(images, labels, keys, strict=True):
                generator.manual_seed(int(key[1]))  # type: ignore[index]
                results.append((self.transform(im), lab))
        finally:
            generator.set_state(state)
        return results

    @property
    def targets(self) -> torch.Tensor:
        return self.dataset.targets  # type: ignore[attr-defined]

    @property
    def info(self) -> DatasetInfo:
        return self.dataset.info  # type: ignore[attr-defined]
