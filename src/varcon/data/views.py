"""SimAugment on large images, one view at a time: the ImageNet-size fast path.

At 224 px the batched float path of :mod:`varcon.data.batched` is bound by memory traffic
(a batch of 64 images x 2 views is 77 MB of float32 per elementwise operation) and by
torchvision's RGB -> HSV -> RGB hue adjustment (~20 passes over the image). Here each view
is computed on its own, on buffers allocated once per worker and reused (they stay in
cache and nothing is allocated per view):

1. crop + antialiased bilinear resize on uint8 (``torch.nn.functional.interpolate``;
   channels-last uint8 input, as decoded JPEGs are, takes torch's vectorised kernel);
2. horizontal flip;
3. colour jitter in float32 on the 0..255 scale, the four adjustments in the drawn order
   (brightness, contrast, saturation: torchvision's blends; hue: a closed form of
   torchvision's HSV rotation, :func:`adjust_hue_`);
4. grayscale (torchvision's luma weights);
5. one rounding to uint8 at the end (round half up).

Parameters come from :func:`varcon.data.batched.draw_simaugment_params`, so the
distribution of crops, flips, jitter factors and orders and grayscale is the one of
:class:`varcon.data.SimAugment` (and torchvision's). The pixel arithmetic differs from
torchvision's uint8 path only in rounding once instead of after every adjustment.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as Fnn

__all__ = ["ViewKernel", "adjust_hue_", "normalize_uint8"]

_GRAY = (0.2989, 0.587, 0.114)  # torchvision's rgb_to_grayscale weights
# adjust_hue_: output channel k = M - d * clamp(A_k * |h - OFF_k| + B_k, 0, 1)
_HUE_OFF = (3.0, 2.0, 4.0)
_HUE_A = (-1.0, 1.0, 1.0)
_HUE_B = (2.0, -1.0, -1.0)


def normalize_uint8(images: torch.Tensor, mean: Sequence[float], std: Sequence[float],
                    out: torch.Tensor | None = None) -> torch.Tensor:
    """uint8 images [..., C, H, W] -> float32 ``(images / 255 - mean) / std`` (same device).

    The last step of the uint8 view path, wherever it runs: in the DataLoader worker, or
    on the accelerator after an uint8 transfer (4x fewer bytes than float32). ``out``:
    a float32 tensor of the same shape to write into.
    """
    if images.dtype != torch.uint8:
        raise ValueError(f"normalize_uint8 expects uint8 images, got {images.dtype}")
    c = images.shape[-3]
    if len(mean) not in (1, c) or len(std) not in (1, c):
        raise ValueError(f"{len(mean)} mean / {len(std)} std values for {c} channels")
    m = torch.tensor(mean, dtype=torch.float32, device=images.device).view(-1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32, device=images.device).view(-1, 1, 1)
    return _normalize(images, m, s, out)


def _normalize(images: torch.Tensor, m: torch.Tensor, s: torch.Tensor,
               out: torch.Tensor | None = None) -> torch.Tensor:
    """normalize_uint8 with mean / std already tensors [C, 1, 1] on the images' device."""
    x = images.to(torch.float32) if out is None else out.copy_(images)
    return x.div_(255.0).sub_(m).div_(s)


class _Workspace:
    """Float buffers for one view size: the image [C, H, W], one [C, H, W] and five
    [H, W] temporaries."""

    def __init__(self, channels: int, height: int, width: int) -> None:
        self.x = torch.empty(channels, height, width)
        self.w = torch.empty(channels, height, width)
        self.p = [torch.empty(height, width) for _ in range(5)]
        self.hue_off = torch.tensor(_HUE_OFF).view(3, 1, 1)
        self.hue_a = torch.tensor(_HUE_A).view(3, 1, 1)
        self.hue_b = torch.tensor(_HUE_B).view(3, 1, 1)


def _gray_into(x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """Luma of x [3, S, S] into out [S, S]: 0.2989 R + 0.587 G + 0.114 B."""
    r, g, b = x.unbind(0)
    torch.mul(r, _GRAY[0], out=out)
    return out.add_(g, alpha=_GRAY[1]).add_(b, alpha=_GRAY[2])


def adjust_hue_(x: torch.Tensor, delta: float, ws: _Workspace | None = None) -> torch.Tensor:
    """Rotate the hue of x [3, H, W] (float, any non-negative scale) by ``delta`` turns,
    in place; the same map as torchvision's ``adjust_hue`` (RGB -> HSV, h <- (h + delta)
    mod 1, HSV -> RGB) without going through HSV.

    With M = max(R, G, B), m = min(R, G, B), d = M - m (kept by the rotation), the
    hexagonal hue is h = 6 * H_hsv in [0, 6):

        s = (M - 2m + G + B - R) / d in [0, 3],   h = s if G >= B else 6 - s,
        h' = (h + 6 delta) mod 6,
        R' = M - d clamp(2 - |h' - 3|, 0, 1),
        G' = M - d clamp(|h' - 2| - 1, 0, 1),
        B' = M - d clamp(|h' - 4| - 1, 0, 1).

    Grey pixels (d = 0) stay as they are. ~20 elementwise operations, no comparisons
    or selects (those are slow on CPU), written into ``ws``'s buffers when given.
    """
    if x.shape[0] != 3:
        raise ValueError(f"adjust_hue_ needs 3 channels, got {tuple(x.shape)}")
    if ws is None:
        ws = _Workspace(3, x.shape[1], x.shape[2])
    r, g, b = x.unbind(0)
    big, small, d, s, t = ws.p
    torch.maximum(r, g, out=big).clamp_(min=b)  # max(r, g, b)
    torch.minimum(r, g, out=small).clamp_(max=b)  # min(r, g, b)
    torch.sub(big, small, out=d)
    torch.sub(big, r, out=s).add_(g).add_(b).sub_(small, alpha=2)
    torch.clamp(d, min=1e-6, out=t)
    s.div_(t).sub_(3)  # s - 3 in [-3, 0]
    torch.sub(g, b, out=t)
    # h = 3 - copysign(3 - s, G - B): s where G >= B (G - B = +0 included), else 6 - s
    torch.copysign(s, t, out=s).neg_().add_(3.0 + 6.0 * float(delta))
    torch.div(s, 6.0, out=t).floor_()
    s.sub_(t, alpha=6.0)  # h' in [0, 6)
    w = ws.w
    torch.sub(s, ws.hue_off, out=w)
    w.abs_().mul_(ws.hue_a).add_(ws.hue_b).clamp_(0.0, 1.0).mul_(d)
    return torch.sub(big, w, out=x)


class ViewKernel:
    """Computes SimAugment views of size S from drawn parameters, one view per call.

    Args:
        image_size: output side S.
        jitter: (brightness, contrast, saturation, hue) strengths; an adjustment whose
            strength is 0 is skipped, as torchvision's ColorJitter does.

    Not thread-safe (it owns its buffers); DataLoader workers each get their own copy.
    """

    def __init__(self, image_size: int, jitter: Sequence[float]) -> None:
        self.image_size = int(image_size)
        self.active = tuple(float(j) > 0 for j in jitter)
        self._ws: dict[int, _Workspace] = {}

    def __getstate__(self) -> dict:  # buffers are not shipped to workers
        state = self.__dict__.copy()
        state["_ws"] = {}
        return state

    def _workspace(self, channels: int) -> _Workspace:
        ws = self._ws.get(channels)
        if ws is None:
            ws = self._ws[channels] = _Workspace(channels, self.image_size, self.image_size)
        return ws

    def __call__(
        self,
        image: torch.Tensor,
        box: Sequence[int],
        flip: bool,
        jitter: bool,
        factors: Sequence[float],
        order: Sequence[int],
        gray: bool,
        out: torch.Tensor,
    ) -> torch.Tensor:
        """Write one view of ``image`` (uint8 [C, H, W], any strides; C = 1 or 3) into
        ``out`` (uint8 [C, S, S], contiguous) and return it.

        ``box`` = (top, left, height, width) of the crop; ``factors`` = (brightness,
        contrast, saturation, hue shift); ``order``: the adjustments' order (0..3).
        """
        size = self.image_size
        i, j, h, w = (int(v) for v in box)
        crop = image[:, i:i + h, j:j + w]
        if (h, w) == (size, size):
            y = crop
        else:
            # a contiguous channels-last crop resizes ~1.6x faster than a strided slice
            y = Fnn.interpolate(crop.unsqueeze(0).contiguous(memory_format=torch.channels_last),
                                size=[size, size], mode="bilinear", antialias=True,
                                align_corners=False)[0]
        if flip:
            y = y.flip(-1)
        c = image.shape[0]
        colour = c == 3
        ops = [op for op in order if self.active[op] and (colour or op < 2)] if jitter else []
        gray = gray and colour
        if not ops and not gray:
            return out.copy_(y)
        ws = self._workspace(c)
        x = ws.x
        x.copy_(y)
        for op in ops:
            f = float(factors[op])
            if op == 0:  # brightness: blend with black
                x.mul_(f).clamp_(0.0, 255.0)
            elif op == 1:  # contrast: blend with the mean grey level
                # mean of the luma = luma of the channel means (one reduction)
                means = x.mean(dim=(1, 2)).tolist()
                mean = sum(wt * v for wt, v in zip(_GRAY, means, strict=True)) if colour \
                    else means[0]
                x.mul_(f).add_(mean * (1.0 - f)).clamp_(0.0, 255.0)
            elif op == 2:  # saturation: blend with the grey image, f x + (1 - f) grey
                grey = _gray_into(x, ws.p[0]).mul_(1.0 - f)
                torch.add(grey, x, alpha=f, out=x).clamp_(0.0, 255.0)
            else:
                adjust_hue_(x, f, ws)
        if gray:
            x.copy_(_gray_into(x, ws.p[0]).expand(3, -1, -1))
        x.add_(0.5)  # values in [0, 255]: truncation below rounds half up
        # numpy's float -> uint8 cast is vectorised (torch's copy_ is ~8x slower here)
        np.copyto(out.numpy(), x.numpy(), casting="unsafe")
        return out
