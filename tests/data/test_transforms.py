"""Transforms: shapes, normalisation, parameter ranges (per image and batched), views."""

from __future__ import annotations

import colorsys

import pytest
import torch
from torch.utils.data import DataLoader
from torchvision.transforms import v2

from varcon.data import (
    AutoAugmentTransform,
    DatasetInfo,
    EvalTransform,
    MultiView,
    RandAugmentTransform,
    SimAugment,
    TensorImageDataset,
    TransformedDataset,
    build_transform,
)
from varcon.data.sampling import EpochBatchSampler
from varcon.data.views import normalize_uint8

ZERO, ONE = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
NO_COLOUR = {"jitter_p": 0.0, "grayscale_p": 0.0}


def augment(tf: SimAugment, image: torch.Tensor, n: int, batched: bool | str) -> torch.Tensor:
    """n augmentations of one uint8 image -> [n, C, S, S]: per-image calls (False),
    apply_batch (True), or "kernel": the per-view uint8 kernel that apply_batch uses above
    64 px and the ImageNet-size file path uses (varcon.data.views), here at any size."""
    if batched == "kernel":
        views = tf.render(image, tf.draw(n, image.shape[1], image.shape[2]))
        return normalize_uint8(views, tf.mean, tf.std)
    if batched:
        return tf.apply_batch(image.unsqueeze(0).expand(n, -1, -1, -1).contiguous())
    return torch.stack([tf(image) for _ in range(n)])


def ramp(size: int = 64) -> torch.Tensor:
    """R = 4 * column, G = 4 * row, B = 0: pixel values reveal the crop box."""
    cols = torch.arange(size).mul(4).to(torch.uint8)
    img = torch.zeros(3, size, size, dtype=torch.uint8)
    img[0] = cols.view(1, -1)
    img[1] = cols.view(-1, 1)
    return img


def flat(value: tuple[int, ...], size: int = 8) -> torch.Tensor:
    return torch.tensor(value, dtype=torch.uint8).view(-1, 1, 1).expand(-1, size, size).clone()


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# ----------------------------------------------------------------------------- basics


@pytest.mark.parametrize("batched", [False, True, "kernel"])
def test_simaugment_shape_dtype_and_normalisation(batched):
    img = torch.randint(0, 256, (3, 40, 48), dtype=torch.uint8)
    mean, std = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)
    tf = SimAugment(24, mean=mean, std=std)
    out = augment(tf, img, 4, batched)
    assert out.shape == (4, 3, 24, 24) and out.dtype == torch.float32
    # no colour change: a flat image comes out exactly as (x / 255 - mean) / std
    ident = SimAugment(16, mean=mean, std=std, **NO_COLOUR)
    colour = (10, 128, 250)
    expect = (torch.tensor(colour) / 255 - torch.tensor(mean)) / torch.tensor(std)
    got = augment(ident, flat(colour, 40), 3, batched)
    torch.testing.assert_close(got, expect.view(1, 3, 1, 1).expand(3, 3, 16, 16))


@pytest.mark.parametrize("batched", [False, True, "kernel"])
def test_crop_area_and_ratio_stay_in_range(batched):
    img = ramp(64)
    for scale in [(0.2, 1.0), (0.6, 0.8)]:
        tf = SimAugment(32, crop_scale=scale, hflip_p=0.0, mean=ZERO, std=ONE, **NO_COLOUR)
        out = augment(tf, img, 300, batched) * 255
        # output pixel centres span (S - 1) / S of the crop; values are 4 x coordinate
        w = (out[:, 0, 0, -1] - out[:, 0, 0, 0]) / 4 * 32 / 31
        h = (out[:, 1, -1, 0] - out[:, 1, 0, 0]) / 4 * 32 / 31
        frac = w * h / 64**2
        assert frac.min() > scale[0] - 0.05 and frac.max() < scale[1] + 0.05
        assert frac.min() < scale[0] + 0.06 and frac.max() > scale[1] - 0.06  # range is used
        ratio = w / h
        assert ratio.min() > 3 / 4 - 0.06 and ratio.max() < 4 / 3 + 0.06


@pytest.mark.parametrize("batched", [False, True, "kernel"])
@pytest.mark.parametrize("p", [0.0, 0.5, 1.0])
def test_flip_rate_follows_hflip_p(batched, p):
    tf = SimAugment(32, crop_scale=(1.0, 1.0), hflip_p=p, mean=ZERO, std=ONE, **NO_COLOUR)
    out = augment(tf, ramp(32), 400, batched)
    flipped = (out[:, 0, :, 0].mean(1) > out[:, 0, :, -1].mean(1)).double().mean().item()
    assert abs(flipped - p) < 0.08


@pytest.mark.parametrize("batched", [False, True, "kernel"])
def test_brightness_and_contrast_factors_in_bounds(batched):
    tf = SimAugment(8, crop_scale=(1.0, 1.0), hflip_p=0.0, jitter=(0.4, 0, 0, 0), jitter_p=1.0,
                    grayscale_p=0.0, mean=ZERO, std=ONE)
    f = augment(tf, flat((100, 100, 100)), 400, batched).mean(dim=(1, 2, 3)) * 255 / 100
    assert f.min() >= 0.6 - 0.01 and f.max() <= 1.4 + 0.01
    assert f.min() < 0.7 and f.max() > 1.3
    # contrast: a half-dark / half-bright image; factor = new difference / old difference
    img = flat((50, 50, 50))
    img[:, :, 4:] = 150
    tf = SimAugment(8, crop_scale=(1.0, 1.0), hflip_p=0.0, jitter=(0, 0.4, 0, 0), jitter_p=1.0,
                    grayscale_p=0.0, mean=ZERO, std=ONE)
    out = augment(tf, img, 400, batched) * 255
    c = (out[:, 0, :, 5:].mean((1, 2)) - out[:, 0, :, :3].mean((1, 2))) / 100
    assert c.min() >= 0.6 - 0.02 and c.max() <= 1.4 + 0.02
    assert c.min() < 0.7 and c.max() > 1.3


@pytest.mark.parametrize("batched", [False, True, "kernel"])
def test_hue_shift_in_bounds_and_jitter_p(batched):
    base = (200, 100, 50)
    h0 = colorsys.rgb_to_hsv(*(v / 255 for v in base))[0]
    tf = SimAugment(8, crop_scale=(1.0, 1.0), hflip_p=0.0, jitter=(0, 0, 0, 0.1), jitter_p=0.8,
                    grayscale_p=0.0, mean=ZERO, std=ONE)
    out = augment(tf, flat(base), 400, batched)[:, :, 0, 0].clamp(0, 1).tolist()
    shift = torch.tensor([(colorsys.rgb_to_hsv(*px)[0] - h0 + 0.5) % 1 - 0.5 for px in out])
    assert shift.abs().max() <= 0.1 + 0.01
    assert shift.min() < -0.07 and shift.max() > 0.07
    unchanged = (shift.abs() < 1e-3).double().mean().item()  # jitter not applied (p = 0.8)
    assert abs(unchanged - 0.2) < 0.08


@pytest.mark.parametrize("batched", [False, True, "kernel"])
def test_saturation_factor_in_bounds(batched):
    tf = SimAugment(8, crop_scale=(1.0, 1.0), hflip_p=0.0, jitter=(0, 0, 0.4, 0), jitter_p=1.0,
                    grayscale_p=0.0, mean=ZERO, std=ONE)
    base = torch.tensor([180.0, 100.0, 60.0])
    gray = float(base @ torch.tensor([0.2989, 0.587, 0.114]))
    out = augment(tf, flat((180, 100, 60)), 300, batched)[:, :, 0, 0] * 255
    s = (out[:, 0] - out[:, 2]) / (base[0] - base[2])  # blend factor with the grey image
    assert s.min() >= 0.6 - 0.02 and s.max() <= 1.4 + 0.02 and s.min() < 0.7 and s.max() > 1.3
    torch.testing.assert_close(out.mean(0)[1], torch.tensor(gray + (100 - gray)), atol=6,
                               rtol=0)


@pytest.mark.parametrize("batched", [False, True, "kernel"])
def test_grayscale_rate(batched):
    tf = SimAugment(8, crop_scale=(1.0, 1.0), hflip_p=0.0, jitter_p=0.0, grayscale_p=0.2,
                    mean=ZERO, std=ONE)
    out = augment(tf, flat((200, 100, 50)), 500, batched)
    grey = ((out[:, 0] - out[:, 1]).abs().amax((1, 2)) < 1e-6).double().mean().item()
    assert abs(grey - 0.2) < 0.07


@pytest.mark.parametrize("batched", [False, True, "kernel"])
def test_one_channel_images(batched):
    img = torch.randint(0, 256, (1, 8, 8), dtype=torch.uint8)
    tf = SimAugment(8, mean=(0.3,), std=(0.4,))  # default grayscale / hue / saturation
    out = augment(tf, img, 50, batched)
    assert out.shape == (50, 1, 8, 8) and out.dtype == torch.float32 and torch.isfinite(out).all()
    # saturation / hue / grayscale leave a 1-channel image as it is
    tf = SimAugment(8, crop_scale=(1.0, 1.0), hflip_p=0.0, jitter=(0, 0, 0.4, 0.1), jitter_p=1.0,
                    grayscale_p=1.0, mean=(0.0,), std=(1.0,))
    torch.testing.assert_close(augment(tf, img, 5, batched), (img.float() / 255).expand(5, -1,
                                                                                      -1, -1))
    for kind in ("autoaugment", "randaugment", "linear", "eval"):
        assert build_transform(kind, 8, (0.3,), (0.4,))(img).shape == (1, 8, 8)


# ----------------------------------------------------------------------------- views, datasets


def test_multiview_views_differ_and_batched_shape():
    img = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
    mv = MultiView(SimAugment(32, mean=(0.5,) * 3, std=(0.25,) * 3), n_views=3)
    views = mv(img)
    assert views.shape == (3, 3, 32, 32)
    assert not torch.equal(views[0], views[1]) and not torch.equal(views[1], views[2])
    batch = mv.apply_batch(torch.stack([img, img]))
    assert batch.shape == (2, 3, 3, 32, 32)
    assert not torch.equal(batch[0, 0], batch[0, 1]) and not torch.equal(batch[0, 0], batch[1, 0])
    with pytest.raises(ValueError, match="n_views"):
        MultiView(mv.transform, n_views=0)


def _tiny_dataset(n: int = 12, size: int = 16) -> TensorImageDataset:
    images = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8)
    info = DatasetInfo("t", 3, ["a", "b", "c"], 3, size, (0.5,) * 3, (0.25,) * 3)
    return TensorImageDataset(images, torch.arange(n) % 3, info)


def test_transformed_dataset_items_batches_and_seeded_keys():
    ds = _tiny_dataset()
    tf = MultiView(SimAugment(16, mean=ds.info.mean, std=ds.info.std))
    td = TransformedDataset(ds, tf)
    x, y = td[4]
    assert x.shape == (2, 3, 16, 16) and y == 1 and len(td) == 12
    assert td.info is ds.info and torch.equal(td.targets, ds.targets)
    loader = DataLoader(td, batch_size=5, shuffle=False)
    views, labels = next(iter(loader))  # through __getitems__ (batched)
    assert views.shape == (5, 2, 3, 16, 16) and labels.tolist() == [0, 1, 2, 0, 1]
    # (index, seed) keys: the same item seed gives the same views whatever the batch
    a = td.__getitems__([(3, 11), (7, 12)])
    b = td.__getitems__([(7, 12), (0, 5), (3, 11)])
    assert torch.equal(a[0][0], b[2][0]) and torch.equal(a[1][0], b[0][0])
    assert not torch.equal(a[0][0], td.__getitems__([(3, 99)])[0][0])
    sampler = EpochBatchSampler(len(ds), 4, seed=1)
    first = [v for v, _ in DataLoader(td, batch_sampler=sampler)]
    again = [v for v, _ in DataLoader(td, batch_sampler=sampler, num_workers=2)]
    assert all(torch.equal(p, q) for p, q in zip(first, again, strict=True))
    # a per-image transform (no apply_batch) with seeded keys is repeatable as well
    ev = TransformedDataset(ds, build_transform("linear", 16, ds.info.mean, ds.info.std))
    assert torch.equal(ev[(2, 3)][0], ev[(2, 3)][0])


def test_build_transform_kinds_and_overrides():
    img = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
    m, s = (0.5,) * 3, (0.25,) * 3
    for kind in ("simaugment", "autoaugment", "randaugment", "linear", "eval"):
        out = build_transform(kind, 32, m, s)(img)
        assert out.shape == (3, 32, 32) and out.dtype == torch.float32
    never = build_transform("simaugment", 32, ZERO, ONE, hflip_p=0.0, crop_scale=(1.0, 1.0),
                            jitter_p=0.0, grayscale_p=0.0)
    outs = torch.stack([never(ramp(32)) for _ in range(30)])  # never flipped, no colour
    assert (outs[:, 0, :, -1].mean(1) > outs[:, 0, :, 0].mean(1) + 0.3).all()
    assert (outs[:, 2] == 0).all()
    with pytest.raises(ValueError, match="unknown transform 'simclr'"):
        build_transform("simclr", 32, m, s)
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['hflip'\].*hflip_p"):
        build_transform("simaugment", 32, m, s, hflip=0.0)
    with pytest.raises(ValueError, match="crop_scale"):
        build_transform("simaugment", 32, m, s, crop_scale=(0.5, 0.2))
    with pytest.raises(ValueError, match="std"):
        build_transform("eval", 32, m, (0.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="uint8"):
        build_transform("simaugment", 32, m, s)(img.float())


def test_eval_and_linear_transforms():
    m, s = (0.5,) * 3, (0.25,) * 3
    img = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
    ev = build_transform("eval", 32, m, s)
    expect = (img.float() / 255 - 0.5) / 0.25
    torch.testing.assert_close(ev(img), expect)  # small: only normalised
    assert ev(torch.randint(0, 256, (3, 40, 50), dtype=torch.uint8)).shape == (3, 32, 32)
    big = torch.randint(0, 256, (3, 300, 400), dtype=torch.uint8)
    ev224 = build_transform("eval", 224, m, s)
    assert isinstance(ev224, EvalTransform) and torch.equal(ev224(big), ev224(big))
    ref = v2.Compose([v2.Resize(256, antialias=True), v2.CenterCrop(224)])(big)
    torch.testing.assert_close(ev224(big), (ref.float() / 255 - 0.5) / 0.25)
    lin = build_transform("linear", 32, ZERO, ONE, hflip_p=0.0)
    outs = torch.stack([lin(flat((255, 255, 255), 32)) for _ in range(60)])
    # zero padding of 32 // 8 = 4: up to 4 black columns and rows, offsets vary
    black_cols = (outs[:, 0] == 0).all(dim=1).sum(dim=1)
    black_rows = (outs[:, 0] == 0).all(dim=2).sum(dim=1)
    assert black_cols.max() == 4 and black_rows.max() == 4 and black_cols.min() <= 1
    assert outs.shape == (60, 3, 32, 32)
    assert build_transform("linear", 224, m, s)(big).shape == (3, 224, 224)


def test_autoaugment_policy_by_size_and_randaugment_params():
    m, s = (0.5,) * 3, (0.25,) * 3
    small = build_transform("autoaugment", 32, m, s)
    large = build_transform("autoaugment", 96, m, s)
    assert isinstance(small, AutoAugmentTransform)
    assert small.pipeline.transforms[2].policy == v2.AutoAugmentPolicy.CIFAR10
    assert large.pipeline.transforms[2].policy == v2.AutoAugmentPolicy.IMAGENET
    ra = build_transform("randaugment", 32, m, s, num_ops=3, magnitude=5)
    assert isinstance(ra, RandAugmentTransform)
    assert ra.pipeline.transforms[2].num_ops == 3 and ra.pipeline.transforms[2].magnitude == 5
    img = torch.randint(0, 256, (3, 40, 40), dtype=torch.uint8)
    assert large(img).shape == (3, 96, 96)
    with pytest.raises(ValueError, match="policy"):
        build_transform("autoaugment", 32, m, s, policy="mnist")


def test_batched_crop_matches_v2_resized_crop():
    """Given the same box, the batched path computes what v2.RandomResizedCrop does."""
    from varcon.data.batched import SimAugmentParams, apply_simaugment_batch

    imgs = torch.randint(0, 256, (3, 3, 40, 40), dtype=torch.uint8)
    boxes = torch.tensor([[0, 0, 40, 40], [5, 3, 20, 14], [1, 2, 37, 30]])
    false = torch.zeros(3, dtype=torch.bool)
    params = SimAugmentParams(boxes, false, false, torch.ones(3, 4), torch.zeros(3, 4).long(),
                              false)
    out = apply_simaugment_batch(imgs, params, image_size=32, jitter=(0.4, 0.4, 0.4, 0.1),
                                 mean=ZERO, std=ONE)
    for k, (i, j, h, w) in enumerate(boxes.tolist()):
        ref = v2.functional.resized_crop(imgs[k], i, j, h, w, [32, 32], antialias=True)
        torch.testing.assert_close(out[k], ref.float() / 255)


def test_per_image_seeded_keys_with_simaugment_are_repeatable():
    """The v2 transforms draw only from torch's RNG, so per-item seeding works per image."""
    ds = _tiny_dataset()
    aug = MultiView(SimAugment(16, mean=ds.info.mean, std=ds.info.std), n_views=2)
    sv = TransformedDataset(ds, lambda img: aug(img))  # a plain callable: per-image path
    a, la = sv[(5, 123)]
    b, lb = sv[(5, 123)]
    assert a.shape == (2, 3, 16, 16) and torch.equal(a, b) and la == lb == 2
    assert not torch.equal(a, sv[(5, 124)][0])


def test_getitems_groups_mixed_sizes():
    class Mixed(torch.utils.data.Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            return torch.full((3, 20 + 4 * i, 24), 60 * i, dtype=torch.uint8), i

    td = TransformedDataset(Mixed(), MultiView(SimAugment(16, mean=ZERO, std=ONE, **NO_COLOUR)))
    items = td.__getitems__([0, 1, 2, 3])
    assert [tuple(x.shape) for x, _ in items] == [(2, 3, 16, 16)] * 4
    assert [y for _, y in items] == [0, 1, 2, 3]
    torch.testing.assert_close(items[2][0], torch.full((2, 3, 16, 16), 120 / 255))
    seeded = td.__getitems__([(1, 7), (3, 8)])
    assert torch.equal(seeded[0][0], td.__getitems__([(1, 7)])[0][0])


def test_multiview_of_per_image_transform_in_batches():
    ds = _tiny_dataset(8, 32)
    td = TransformedDataset(ds, MultiView(build_transform("autoaugment", 32, ds.info.mean,
                                                          ds.info.std), n_views=2))
    views, labels = next(iter(DataLoader(td, batch_size=4)))
    assert views.shape == (4, 2, 3, 32, 32) and labels.tolist() == [0, 1, 2, 0]
    a = td.__getitems__([(1, 5), (2, 6)])
    b = td.__getitems__([(2, 6), (1, 5)])
    assert torch.equal(a[0][0], b[1][0]) and not torch.equal(a[0][0][0], a[0][0][1])
