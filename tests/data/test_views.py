"""The ImageNet-size view path: per-view kernel, hue closed form, draws from the JPEG
header, reduced-scale decoding, uint8 views, seeds, shared-memory batches, bad JPEGs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as Fnn
from PIL import Image
from torch.utils.data import DataLoader
from torchvision.transforms.v2 import functional as F

import varcon.data.datasets as vd
from varcon.data import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    EncodedImage,
    ImageFileDataset,
    MultiView,
    SimAugment,
    TransformedDataset,
    ViewBatch,
    build_dataset,
    build_transform,
)
from varcon.data.batched import draw_simaugment_params, draw_view_rows
from varcon.data.sampling import EpochBatchSampler
from varcon.data.transforms import _scale_box
from varcon.data.views import ViewKernel, adjust_hue_, normalize_uint8

pytestmark = pytest.mark.filterwarnings("ignore:The image decoding:DeprecationWarning")

JITTER = (0.4, 0.4, 0.4, 0.1)
KW = {"crop_scale": (0.2, 1.0), "hflip_p": 0.5, "jitter": JITTER, "jitter_p": 0.8,
      "grayscale_p": 0.2}


def smooth_rgb(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A photograph-like uint8 [H, W, 3]: smooth colour structure plus a little noise."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(1, 3, 6, 8, generator=g) * 255
    img = Fnn.interpolate(low, size=(height, width), mode="bicubic", align_corners=False)
    img = img + 4 * torch.randn(img.shape, generator=g)
    return img[0].clamp(0, 255).to(torch.uint8).permute(1, 2, 0).contiguous().numpy()


def save(path: Path, arr: np.ndarray, mode: str = "RGB", fmt: str = "JPEG") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(arr)
    if mode != "RGB":
        im = im.convert(mode)
    im.save(path, fmt, **({"quality": 92} if fmt == "JPEG" else {}))
    return path


def jpeg_tree(root: Path, n: int = 6, size: tuple[int, int] = (120, 90)) -> Path:
    for k in range(n):
        save(root / "train" / f"c{k % 2}" / f"{k:03d}.jpg", smooth_rgb(*size, seed=k))
    return root


def encoded(path: Path) -> EncodedImage:
    return EncodedImage(vd.read_file(str(path)), path)


# ----------------------------------------------------------------------------- kernel


@pytest.mark.parametrize("delta", [0.0, 0.03, -0.1, 0.1, 0.5, -0.37])
def test_hue_closed_form_equals_torchvision(delta):
    x = torch.rand(3, 40, 40)
    x[:, :5] = x[0:1, :5]  # grey pixels (d = 0)
    x[1, 5:10] = x[2, 5:10]  # G = B (the two halves of the hexagon meet)
    x[:, 10:15] = (x[:, 10:15] * 3).round() / 3  # ties between the maximum channels
    x[:, 15:17] = torch.tensor([0.0, 1.0, 0.0]).view(3, 1, 1)  # saturated primaries
    got = adjust_hue_(x.clone() * 255, delta) / 255
    torch.testing.assert_close(got, F.adjust_hue(x, delta), atol=2e-6, rtol=0)


def test_kernel_without_colour_is_v2_resized_crop_and_flip():
    img = torch.randint(0, 256, (3, 90, 120), dtype=torch.uint8)
    channels_last = img.permute(1, 2, 0).contiguous().permute(2, 0, 1)  # as decoded
    kernel = ViewKernel(48, JITTER)
    out = torch.empty(3, 48, 48, dtype=torch.uint8)
    for box in ([0, 0, 90, 120], [10, 20, 60, 70], [5, 7, 48, 48], [3, 4, 30, 20]):
        ref = F.resized_crop(img, *box, [48, 48], antialias=True)
        for source in (img, channels_last):
            assert torch.equal(kernel(source, box, False, False, [1, 1, 1, 0], [0, 1, 2, 3],
                                      False, out=out), ref)
            assert torch.equal(kernel(source, box, True, False, [1, 1, 1, 0], [0, 1, 2, 3],
                                      False, out=out), ref.flip(-1))


def test_kernel_jitter_in_any_order_matches_torchvision_float_ops():
    """Each adjustment is torchvision's (on float); only the final rounding differs."""
    img = torch.from_numpy(smooth_rgb(80, 60)).permute(2, 0, 1)
    kernel = ViewKernel(32, JITTER)
    out = torch.empty(3, 32, 32, dtype=torch.uint8)
    ops = [F.adjust_brightness, F.adjust_contrast, F.adjust_saturation, F.adjust_hue]
    g = torch.Generator().manual_seed(0)
    for trial in range(40):
        factors = (torch.rand(4, generator=g) * 0.8 + 0.6).tolist()
        factors[3] = factors[3] / 4 - 0.25  # hue shift in [-0.1, 0.1]
        order = torch.randperm(4, generator=g).tolist()
        gray, flip = trial % 5 == 0, trial % 2 == 1
        box = [5, 8, 50, 64]
        got = kernel(img, box, flip, True, factors, order, gray, out=out)
        x = F.resized_crop(img, *box, [32, 32], antialias=True).float() / 255
        x = x.flip(-1) if flip else x
        for op in order:
            x = ops[op](x, factors[op])
        if gray:
            x = F.rgb_to_grayscale(x, 3)
        want = (x * 255 + 0.5).floor()
        assert (got.float() - want).abs().max() <= 1  # a rounding boundary at most


def test_kernel_one_channel_images():
    img = torch.randint(0, 256, (1, 40, 40), dtype=torch.uint8)
    kernel = ViewKernel(40, JITTER)
    out = torch.empty(1, 40, 40, dtype=torch.uint8)
    # saturation, hue and grayscale are no-ops on one channel
    same = kernel(img, [0, 0, 40, 40], False, True, [1, 1, 1.3, 0.1], [2, 3, 0, 1], True,
                  out=out)
    assert torch.equal(same, img)
    bright = kernel(img, [0, 0, 40, 40], False, True, [0.5, 1, 1, 0], [0, 1, 2, 3], False,
                    out=out)
    assert torch.equal(bright, (img.float() * 0.5 + 0.5).floor().to(torch.uint8))


def test_normalize_uint8_and_errors():
    u = torch.randint(0, 256, (2, 3, 4, 4), dtype=torch.uint8)
    mean, std = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)
    want = (u.float() / 255 - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)
    torch.testing.assert_close(normalize_uint8(u, mean, std), want)
    out = torch.empty(2, 3, 4, 4)
    assert normalize_uint8(u, mean, std, out=out) is out
    with pytest.raises(ValueError, match="uint8"):
        normalize_uint8(u.float(), mean, std)
    with pytest.raises(ValueError, match="channels"):
        normalize_uint8(u, (0.5, 0.5), std)


# ----------------------------------------------------------------------------- draws


@pytest.mark.parametrize("size", [(375, 500), (30, 3000), (10, 10)])
def test_view_rows_equal_the_tensor_draws(size):
    for seed in range(50):
        g1, g2 = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
        params = draw_simaugment_params(2, *size, generators=[g1, g1], **KW)
        rows = draw_view_rows(2, *size, generators=[g2, g2], **KW)
        for k, (box, flip, jitter, factors, order, gray) in enumerate(rows):
            assert box == params.boxes[k].tolist() and order == params.order[k].tolist()
            assert factors == params.factors[k].tolist()  # bit-identical float32 values
            assert (flip, jitter, gray) == (bool(params.flip[k]), bool(params.jitter[k]),
                                            bool(params.gray[k]))
    torch.manual_seed(3)
    a = draw_simaugment_params(4, *size, **KW)
    torch.manual_seed(3)
    assert [r[0] for r in draw_view_rows(4, *size, **KW)] == a.boxes.tolist()


def test_large_view_parameter_ranges():
    """The kernel path (image_size > 64) keeps SimAugment's ranges: crop area and ratio,
    flip, jitter and grayscale rates (the colour factor ranges are checked on the kernel
    in tests/data/test_transforms.py)."""
    sim = SimAugment(96, mean=(0,) * 3, std=(1,) * 3)
    rows = sim._draw_rows(4000, 300, 400, None)
    boxes = torch.tensor([r[0] for r in rows], dtype=torch.float64)
    area = boxes[:, 2] * boxes[:, 3] / (300 * 400)
    ratio = boxes[:, 3] / boxes[:, 2]
    assert area.min() > 0.19 and area.max() <= 1.0 and area.min() < 0.21 and area.max() > 0.95
    assert ratio.min() > 0.74 and ratio.max() < 1.34
    for k, p in ((1, 0.5), (2, 0.8), (5, 0.2)):
        assert abs(np.mean([r[k] for r in rows]) - p) < 0.03
    factors = torch.tensor([r[3] for r in rows])
    assert factors[:, :3].min() >= 0.6 and factors[:, :3].max() <= 1.4
    assert factors[:, 3].abs().max() <= 0.1


# ----------------------------------------------------------------------------- files


def test_views_from_file_draw_before_decoding_and_equal_apply_views(tmp_path):
    path = save(tmp_path / "a.jpg", smooth_rgb(150, 100))
    sim = SimAugment(80, mean=IMAGENET_MEAN, std=IMAGENET_STD, reduced_decode=False)
    enc = encoded(path)
    assert enc.size == (100, 150)
    image = enc.decode()
    for seed in range(5):
        a = sim.views_from_file(enc, 2, torch.Generator().manual_seed(seed))
        b = sim.apply_views(image.unsqueeze(0), 2, [torch.Generator().manual_seed(seed)],
                            normalize=False)[0]
        assert a.dtype == torch.uint8 and a.shape == (2, 3, 80, 80)
        assert torch.equal(a, b)  # header-first draws are the decoded-first draws
        c = sim.views_from_file(encoded(path), 2, torch.Generator().manual_seed(seed))
        assert torch.equal(a, c)  # the same seed: bit-identical views
    d = sim.views_from_file(enc, 2, torch.Generator().manual_seed(99))
    assert not torch.equal(a, d) and not torch.equal(a[0], a[1])


def test_reduced_decode_is_chosen_from_the_crops_and_close_to_full(tmp_path, monkeypatch):
    path = save(tmp_path / "big.jpg", smooth_rgb(1200, 900))
    used: list[int] = []
    decode = EncodedImage.decode

    def spy(self, reduce=1):
        used.append(reduce)
        return decode(self, reduce)

    monkeypatch.setattr(EncodedImage, "decode", spy)
    colourless = {"jitter_p": 0.0, "grayscale_p": 0.0}
    for size, scale, want in ((64, (0.9, 1.0), 8), (200, (0.9, 1.0), 4), (400, (0.9, 1.0), 2),
                              (64, (0.01, 0.011), 1)):
        fast = SimAugment(size, crop_scale=scale, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                          **colourless)
        full = SimAugment(size, crop_scale=scale, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                          reduced_decode=False, **colourless)
        used.clear()
        a = fast.views_from_file(encoded(path), 2, torch.Generator().manual_seed(1))
        assert used == [want]
        b = full.views_from_file(encoded(path), 2, torch.Generator().manual_seed(1))
        assert used == [want, 1]
        diff = (a.float() - b.float()).abs()
        assert diff.mean() < 1.5 and (want > 1 or diff.max() == 0)
    # a config override reaches it: data.augment_params.reduced_decode=false
    off = build_transform("simaugment", 64, IMAGENET_MEAN, IMAGENET_STD, reduced_decode=False)
    assert isinstance(off, SimAugment) and not off.reduced_decode


def test_scale_box_covers_the_crop():
    g = torch.Generator().manual_seed(0)
    for _ in range(500):
        h0, w0 = (int(v) for v in torch.randint(50, 2000, (2,), generator=g))
        r = int((2, 4, 8)[int(torch.randint(3, (1,), generator=g))])
        h1, w1 = -(-h0 // r), -(-w0 // r)
        bh, bw = int(torch.randint(1, h0 + 1, (1,), generator=g)), int(
            torch.randint(1, w0 + 1, (1,), generator=g))
        top = int(torch.randint(0, h0 - bh + 1, (1,), generator=g))
        left = int(torch.randint(0, w0 - bw + 1, (1,), generator=g))
        t, lft, h, w = _scale_box([top, left, bh, bw], (h0, w0), (h1, w1))
        assert 0 <= t and t + h <= h1 and 0 <= lft and lft + w <= w1
        assert t <= top * h1 / h0 and t + h >= (top + bh) * h1 / h0 - 1e-9  # covers it
        assert h < bh * h1 / h0 + 2 and w < bw * w1 / w0 + 2  # by less than a pixel a side
        assert h >= bh / r and w >= bw / r


@pytest.mark.parametrize("mode", ["L", "CMYK"])
def test_grayscale_and_cmyk_jpegs_decode_to_rgb_at_every_scale(tmp_path, mode):
    path = save(tmp_path / f"{mode}.jpg", smooth_rgb(160, 120), mode=mode)
    enc = encoded(path)
    assert enc.size == (120, 160)
    with Image.open(path) as im:
        assert im.mode == mode
        ref = np.asarray(im.convert("RGB"))
    full = enc.decode()
    assert full.shape == (3, 120, 160) and full.dtype == torch.uint8
    assert np.abs(full.permute(1, 2, 0).numpy().astype(int) - ref).max() <= 1
    half = enc.decode(2)
    assert half.shape == (3, 60, 80)
    small = np.asarray(Image.fromarray(ref).resize((80, 60), Image.BOX)).astype(int)
    assert np.abs(half.permute(1, 2, 0).numpy().astype(int) - small).mean() < 3
    sim = SimAugment(48, crop_scale=(0.9, 1.0), mean=IMAGENET_MEAN, std=IMAGENET_STD)
    views = sim.views_from_file(enc, 2, torch.Generator().manual_seed(0))  # reduce 2 here
    assert views.shape == (2, 3, 48, 48)
    if mode == "L":  # a grey image stays grey through every adjustment
        assert torch.equal(views[:, 0], views[:, 1]) and torch.equal(views[:, 1], views[:, 2])


def test_truncated_jpeg_is_a_clear_error_at_every_scale(tmp_path):
    root = jpeg_tree(tmp_path, n=4, size=(300, 200))
    good = root / "train" / "c0" / "000.jpg"
    bad = root / "train" / "c0" / "002.jpg"
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) * 2 // 3])
    enc = encoded(bad)
    assert enc.size == (200, 300)  # the header is intact...
    for reduce in (1, 2):
        with pytest.raises(ValueError, match=r"002\.jpg.*bad_files"):  # ...the data is not
            enc.decode(reduce)
    # bad_files='skip' checks headers only with cache='none': found when first used
    ds = build_dataset("imagefolder", root, "train", cache="none", bad_files="skip")
    assert isinstance(ds, ImageFileDataset) and len(ds) == 4
    td = TransformedDataset(ds, MultiView(SimAugment(96, mean=IMAGENET_MEAN,
                                                     std=IMAGENET_STD)))
    i = ds.paths.index(str(bad))
    with pytest.raises(ValueError, match=r"cannot decode image file .*002\.jpg"):
        td.__getitems__([(ds.paths.index(str(good)), 1), (i, 2)])
    with pytest.raises(ValueError, match="reduce"):
        encoded(good).decode(3)


def test_non_jpeg_files_are_decoded_first(tmp_path):
    path = save(tmp_path / "a.png", smooth_rgb(100, 70), fmt="PNG")
    enc = encoded(path)
    assert enc.size is None
    sim = SimAugment(72, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    a = sim.views_from_file(enc, 2, torch.Generator().manual_seed(4))
    b = sim.apply_views(enc.decode().unsqueeze(0), 2, [torch.Generator().manual_seed(4)],
                        normalize=False)[0]
    assert torch.equal(a, b)


# ----------------------------------------------------------------------------- datasets


def test_file_dataset_views_are_seeded_uint8_or_float_and_worker_independent(tmp_path):
    ds = build_dataset("imagefolder", jpeg_tree(tmp_path), "train", cache="none")
    assert isinstance(ds, ImageFileDataset)
    tf = MultiView(SimAugment(96, mean=IMAGENET_MEAN, std=IMAGENET_STD), n_views=2)
    u8 = TransformedDataset(ds, tf, uint8_views=True)
    fl = TransformedDataset(ds, tf)
    a = u8.__getitems__([(1, 10), (4, 11)])
    b = u8.__getitems__([(4, 11), (0, 3), (1, 10)])
    assert isinstance(a, ViewBatch) and a.views.shape == (2, 2, 3, 96, 96)
    assert a.views.dtype == torch.uint8 and a.labels.tolist() == ds.targets[[1, 4]].tolist()
    assert torch.equal(a[0][0], b[2][0]) and torch.equal(a[1][0], b[0][0])  # batch-free
    assert not torch.equal(a[0][0], u8.__getitems__([(1, 12)])[0][0])
    f = fl.__getitems__([(1, 10), (4, 11)])
    assert f.views.dtype == torch.float32
    assert torch.equal(u8.finish(a.views), f.views)  # normalising on the device: the same
    assert torch.equal(fl.finish(f.views), f.views)
    x, y = u8[(1, 10)]
    assert torch.equal(x, a[0][0]) and y == int(ds.targets[1])
    assert u8[2][0].dtype == torch.uint8  # int keys give uint8 views too
    assert fl[2][0].shape == (2, 3, 96, 96) and fl[2][0].dtype == torch.float32
    single = TransformedDataset(ds, SimAugment(96, mean=IMAGENET_MEAN, std=IMAGENET_STD))
    assert single.__getitems__([(1, 10)]).views.shape == (1, 3, 96, 96)
    # the engine's loader: two workers, shared-memory batches, collate passes them through
    sampler = EpochBatchSampler(len(ds), 3, seed=5)
    here = [v for v, _ in DataLoader(u8, batch_sampler=sampler,
                                     collate_fn=TransformedDataset.collate)]
    there = [(v, y) for v, y in DataLoader(u8, batch_sampler=sampler, num_workers=2,
                                           collate_fn=TransformedDataset.collate)]
    default = [v for v, _ in DataLoader(u8, batch_sampler=sampler)]
    assert len(here) == len(there) == 2 and here[0].shape == (3, 2, 3, 96, 96)
    assert all(torch.equal(p, q) for p, (q, _) in zip(here, there, strict=True))
    assert all(torch.equal(p, q) for p, q in zip(here, default, strict=True))
    assert there[0][1].dtype == torch.long


def test_uint8_views_with_in_memory_and_other_transforms(tmp_path):
    """uint8_views on the batched small-image path, and ignored by other transforms."""
    from varcon.data import DatasetInfo, TensorImageDataset

    images = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    info = DatasetInfo("t", 2, ["a", "b"], 3, 32, (0.5,) * 3, (0.25,) * 3)
    ds = TensorImageDataset(images, torch.arange(6) % 2, info)
    tf = MultiView(SimAugment(32, mean=info.mean, std=info.std))
    u8 = TransformedDataset(ds, tf, uint8_views=True)
    fl = TransformedDataset(ds, tf)
    a, b = u8.__getitems__([(2, 7)])[0][0], fl.__getitems__([(2, 7)])[0][0]
    assert a.dtype == torch.uint8 and b.dtype == torch.float32
    assert (u8.finish(a) - b).abs().max() <= 0.5 / 255 / 0.25 + 1e-6  # rounding only
    other = TransformedDataset(ds, build_transform("linear", 32, info.mean, info.std),
                               uint8_views=True)
    assert not other.uint8_views and other[(1, 2)][0].dtype == torch.float32
    big = torch.randint(0, 256, (2, 3, 100, 90), dtype=torch.uint8)  # > 64 px: the kernel
    sim = SimAugment(80, mean=info.mean, std=info.std)
    gens = [torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)]
    out = sim.apply_batch(big, gens)
    assert out.shape == (2, 3, 80, 80) and out.dtype == torch.float32
    again = sim.apply_batch(big, [torch.Generator().manual_seed(1),
                                  torch.Generator().manual_seed(2)], normalize=False)
    assert torch.equal(normalize_uint8(again, info.mean, info.std), out)
