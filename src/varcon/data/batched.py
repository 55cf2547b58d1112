"""Batched SimAugment: the same per-image random distribution, applied to a whole batch.

``torchvision.transforms.v2`` applies one set of random parameters per call, so on tiny
images (CIFAR, 32 px) a per-image pipeline is dominated by per-call overhead (~15 small
tensor ops per view). Here each image still draws its OWN parameters, from the same
distributions torchvision uses (RandomResizedCrop's 10-attempt area / log-ratio rejection
sampling and centre-crop fallback, flip, RandomApply(ColorJitter) with a random order of
the four adjustments, RandomGrayscale), but the pixel work after the crop is done once for
the batch on float32 tensors:

* crop + resize: per image, ``torch.nn.functional.interpolate`` (bilinear, antialias) on
  the uint8 crop, exactly what ``v2.RandomResizedCrop`` computes for those parameters;
* flip, brightness, contrast, saturation, hue, grayscale, normalisation: batched, in
  float [0, 1] (torchvision's uint8 path rounds to uint8 after every adjustment; this path
  does not, the only difference: at most 1/255 per adjustment).

Used through :meth:`varcon.data.SimAugment.apply_batch` and the ``__getitems__`` fast path
of :class:`varcon.data.TransformedDataset`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as Fnn

__all__ = ["SimAugmentParams", "apply_simaugment_batch", "draw_simaugment_params",
           "draw_view_rows"]

_GRAY = (0.2989, 0.587, 0.114)  # torchvision's rgb_to_grayscale weights
_RATIO = (3.0 / 4.0, 4.0 / 3.0)
_N_UNIFORMS = 10 * 2 + 2 + 1 + 1 + 4 + 4 + 1  # crop attempts, position, flip, apply, factors,
# jitter order, grayscale


class SimAugmentParams:
    """Per-image parameters: crop boxes (top, left, height, width) [N, 4] long, flip [N]
    bool, jitter [N] bool, factors [N, 4] (brightness, contrast, saturation, hue), order
    [N, 4] long (a permutation of 0..3 per image), gray [N] bool."""

    def __init__(self, boxes: torch.Tensor, flip: torch.Tensor, jitter: torch.Tensor,
                 factors: torch.Tensor, order: torch.Tensor, gray: torch.Tensor) -> None:
        self.boxes, self.flip, self.jitter = boxes, flip, jitter
        self.factors, self.order, self.gray = factors, order, gray


def _crop_box(u: list[float], height: int, width: int, scale: tuple[float, float]
              ) -> tuple[int, int, int, int]:
    """torchvision RandomResizedCrop.make_params, driven by given uniforms."""
    area = height * width
    log_lo, log_hi = math.log(_RATIO[0]), math.log(_RATIO[1])
    for k in range(10):
        target_area = area * (scale[0] + (scale[1] - scale[0]) * u[2 * k])
        aspect = math.exp(log_lo + (log_hi - log_lo) * u[2 * k + 1])
        w = round(math.sqrt(target_area * aspect))
        h = round(math.sqrt(target_area / aspect))
        if 0 < w <= width and 0 < h <= height:
            i = min(int(u[20] * (height - h + 1)), height - h)
            j = min(int(u[21] * (width - w + 1)), width - w)
            return i, j, h, w
    in_ratio = width / height  # fallback: centre crop with the ratio clamped
    if in_ratio < _RATIO[0]:
        w, h = width, round(width / _RATIO[0])
    elif in_ratio > _RATIO[1]:
        h, w = height, round(height * _RATIO[1])
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def draw_simaugment_params(
    n: int, height: int, width: int, *, crop_scale: tuple[float, float], hflip_p: float,
    jitter: tuple[float, float, float, float], jitter_p: float, grayscale_p: float,
    generators: Sequence[torch.Generator | None] | None = None,
) -> SimAugmentParams:
    """Draw SimAugment parameters for ``n`` images of size height x width.

    Args:
        generators: one torch.Generator per image (None entries, or None: the global
            RNG). With per-image generators the draws do not depend on the batch.
    """
    if generators is None:
        u_all = torch.rand(n, _N_UNIFORMS, dtype=torch.float64)
    else:
        u_all = torch.stack([torch.rand(_N_UNIFORMS, dtype=torch.float64, generator=g)
                             for g in generators])
    rows = u_all.tolist()
    boxes = torch.tensor([_crop_box(r, height, width, crop_scale) for r in rows],
                         dtype=torch.long).reshape(n, 4)
    u = u_all[:, 22:]
    flip = u[:, 0] < hflip_p
    apply = u[:, 1] < jitter_p
    b, c, s, h = jitter
    lo = torch.tensor([1 - b, 1 - c, 1 - s, -h], dtype=torch.float64)
    hi = torch.tensor([1 + b, 1 + c, 1 + s, h], dtype=torch.float64)
    lo[:3].clamp_(min=0)
    factors = (lo + (hi - lo) * u[:, 2:6]).float()
    order = u[:, 6:10].argsort(dim=1)  # uniform random permutation per image
    gray = u[:, 10] < grayscale_p
    return SimAugmentParams(boxes, flip, apply, factors, order, gray)


def draw_view_rows(
    n: int, height: int, width: int, *, crop_scale: tuple[float, float], hflip_p: float,
    jitter: tuple[float, float, float, float], jitter_p: float, grayscale_p: float,
    generators: Sequence[torch.Generator | None] | None = None,
) -> list[tuple]:
    """:func:`draw_simaugment_params` as Python values, one tuple per view: ``(box, flip,
    jitter, factors, order, gray)`` with box = [top, left, height, width], factors =
    [brightness, contrast, saturation, hue] (float32 values) and order a permutation of
    0..3. The same uniforms in the same order give the same values (tested): a per-image
    path without ~15 small tensor operations per image.
    """
    if generators is None:
        rows = torch.rand(n, _N_UNIFORMS, dtype=torch.float64).tolist()
    else:
        rows = [torch.rand(_N_UNIFORMS, dtype=torch.float64, generator=g).tolist()
                for g in generators]
    b, c, s, h = jitter
    lo = (max(1 - b, 0.0), max(1 - c, 0.0), max(1 - s, 0.0), -h)
    span = (1 + b - lo[0], 1 + c - lo[1], 1 + s - lo[2], h - lo[3])
    out = []
    for r in rows:
        box = list(_crop_box(r, height, width, crop_scale))
        u = r[22:]
        # float64 as draw_simaugment_params computes them, then rounded to float32
        factors = np.array([lo[k] + span[k] * u[2 + k] for k in range(4)],
                           dtype=np.float32).tolist()
        order = sorted(range(4), key=u[6:10].__getitem__)
        out.append((box, u[0] < hflip_p, u[1] < jitter_p, factors, order,
                    u[10] < grayscale_p))
    return out


def _grayscale(x: torch.Tensor) -> torch.Tensor:
    """[N, 3, H, W] -> [N, 1, H, W] luma."""
    r, g, b = x.unbind(1)
    return (r * _GRAY[0] + g * _GRAY[1] + b * _GRAY[2]).unsqueeze(1)


def _rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    r, g, b = x.unbind(1)
    maxc, _ = x.max(dim=1)
    minc, _ = x.min(dim=1)
    delta = maxc - minc
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    s = torch.where(maxc > 0, delta / torch.where(maxc > 0, maxc, torch.ones_like(maxc)),
                    torch.zeros_like(maxc))
    hr = ((g - b) / safe) % 6.0
    hg = (b - r) / safe + 2.0
    hb = (r - g) / safe + 4.0
    h = torch.where(maxc == r, hr, torch.where(maxc == g, hg, hb))
    h = torch.where(delta > 0, h / 6.0, torch.zeros_like(h)) % 1.0
    return torch.stack((h, s, maxc), dim=1)


def _hsv_to_rgb(x: torch.Tensor) -> torch.Tensor:
    h, s, v = x.unbind(1)
    h6 = (h * 6.0).unsqueeze(1)
    n = torch.tensor([5.0, 3.0, 1.0], dtype=x.dtype).view(1, 3, 1, 1)
    k = (n + h6) % 6.0
    w = torch.minimum(k, 4.0 - k).clamp(0.0, 1.0)
    return v.unsqueeze(1) - (v * s).unsqueeze(1) * w


def _adjust(x: torch.Tensor, op: int, f: torch.Tensor) -> torch.Tensor:
    """One ColorJitter adjustment on float [M, C, H, W] in [0, 1], factors f [M]."""
    f = f.view(-1, 1, 1, 1)
    rgb = x.shape[1] == 3
    if op == 0:  # brightness
        return (x * f).clamp_(0.0, 1.0)
    if op == 1:  # contrast: blend with the mean grey level
        mean = (_grayscale(x) if rgb else x).mean(dim=(1, 2, 3), keepdim=True)
        return (x * f + mean * (1.0 - f)).clamp_(0.0, 1.0)
    if not rgb:  # saturation and hue are no-ops on 1-channel images
        return x
    if op == 2:  # saturation: blend with the grey image
        return (x * f + _grayscale(x) * (1.0 - f)).clamp_(0.0, 1.0)
    hsv = _rgb_to_hsv(x)  # hue: rotate
    hsv[:, 0] = (hsv[:, 0] + f.view(-1, 1, 1)) % 1.0
    return _hsv_to_rgb(hsv).clamp_(0.0, 1.0)


def apply_simaugment_batch(
    images: torch.Tensor, params: SimAugmentParams, *, image_size: int,
    jitter: tuple[float, float, float, float], mean: Sequence[float], std: Sequence[float],
    normalize: bool = True,
) -> torch.Tensor:
    """Apply drawn parameters to uint8 images [N, C, H, W] -> float32 [N, C, S, S]
    normalised by mean/std, or (``normalize=False``) uint8 [N, C, S, S] rounded from the
    same float values (finish with :func:`varcon.data.views.normalize_uint8`)."""
    n, c = images.shape[:2]
    crops = torch.empty(n, c, image_size, image_size, dtype=torch.uint8)
    size = [image_size, image_size]
    for k, (i, j, h, w) in enumerate(params.boxes.tolist()):
        crop = images[k:k + 1, :, i:i + h, j:j + w]
        if h == image_size and w == image_size:
            crops[k] = crop[0]
        else:
            crops[k] = Fnn.interpolate(crop, size=size, mode="bilinear", antialias=True,
                                       align_corners=False)[0]
    x = crops.float().div_(255.0)
    if params.flip.any():
        x[params.flip] = x[params.flip].flip(-1)
    active = [op for op in range(4) if (jitter[op] > 0)]
    if params.jitter.any() and active:
        for step in range(4):
            for op in active:
                sel = (params.jitter & (params.order[:, step] == op)).nonzero().flatten()
                if len(sel):
                    x[sel] = _adjust(x[sel], op, params.factors[sel, op])
    if c == 3 and params.gray.any():
        x[params.gray] = _grayscale(x[params.gray]).expand(-1, 3, -1, -1)
    if not normalize:  # values are in [0, 1]: round half up, via int32 (a fast cast)
        return x.mul_(255.0).add_(0.5).to(torch.int32).to(torch.uint8)
    m = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    return x.sub_(m).div_(s)
