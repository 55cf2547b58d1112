"""Image corruptions: the 19 generated corruptions, seeding, small and grayscale images, the
lazy CorruptedDataset, and the CIFAR-C / ImageNet-C readers on tiny generated trees."""

from __future__ import annotations

import importlib.util
import pickle
import random
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from varcon.data import DatasetInfo, TensorImageDataset
from varcon.evaluation.corruptions import (
    CORRUPTIONS,
    EXTRA_CORRUPTIONS,
    SEVERITIES,
    CifarCDataset,
    CorruptedDataset,
    ImageNetCDataset,
    available_corruptions,
    corrupt,
    detect_corruption_layout,
)

ALL = CORRUPTIONS + EXTRA_CORRUPTIONS
# Corruptions that draw random numbers (the other 8 are deterministic functions of the image).
RANDOM = ("gaussian_noise", "shot_noise", "impulse_noise", "glass_blur", "motion_blur", "snow",
          "frost", "fog", "elastic_transform", "speckle_noise", "spatter")
LUMA = np.array([0.299, 0.587, 0.114])

needs_lib = pytest.mark.skipif(importlib.util.find_spec("imagecorruptions") is None,
                               reason='imagecorruptions missing: pip install "varcon[robustness]"')


def scene(n: int = 32) -> np.ndarray:
    """A natural-looking uint8 [n, n, 3] image: dusk sky gradient over a wavy olive ground,
    a pale disc and a brick-coloured box (muted colours, mean ~90)."""
    y, x = np.mgrid[0:n, 0:n] / (n - 1)
    sky = np.stack([70 + 50 * y, 90 + 40 * y, 130 - 10 * y], -1)
    ground = np.stack([80 - 30 * y, 90 - 30 * y, 60 - 20 * y], -1)
    im = np.where((y > 0.6 + 0.08 * np.sin(6 * x))[..., None], ground, sky)
    im[(x - 0.3) ** 2 + (y - 0.3) ** 2 < 0.02] = [200, 170, 120]
    box = (x > 0.55) & (x < 0.85) & (y > 0.4) & (y < 0.75)
    im[box] = np.stack([140 - 40 * x, 90 + 0 * x, 80 + 20 * x], -1)[box]
    return np.clip(im, 0, 255).astype(np.uint8)


def l1(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b).mean())


def corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel().astype(np.float64), b.ravel().astype(np.float64))[0, 1])


# --------------------------------------------------------------------------- corrupt()


@needs_lib
def test_names_are_the_library_s() -> None:
    import imagecorruptions

    assert list(CORRUPTIONS) == imagecorruptions.get_corruption_names("common")
    assert list(EXTRA_CORRUPTIONS) == imagecorruptions.get_corruption_names("validation")
    assert len(set(ALL)) == 19 and SEVERITIES == (1, 2, 3, 4, 5)


@needs_lib
@pytest.mark.parametrize("name", ALL)
def test_shape_dtype_change_and_severity_order(name: str) -> None:
    """32 x 32 (CIFAR size): same shape and dtype, the image changes, severity 5 changes it
    more than severity 1. Frost is judged by correlation with the clean image instead of
    mean |difference|: severity 1 adds 0.4 x frost to the full image, severity 5 adds 0.75 x
    frost to 0.6 x the image, so on bright or dark-frost crops the mean |difference| can
    shrink while more of the image is lost (measured: 1 seed in 12 here)."""
    im = scene(32)
    for seed in (0, 1):
        mild, hard = (corrupt(im, name, s, seed=seed) for s in (1, 5))
        for out in (mild, hard):
            assert out.shape == im.shape and out.dtype == np.uint8
        assert not np.array_equal(mild, im)
        if name == "frost":
            assert corr(hard, im) < corr(mild, im) - 0.05
        else:
            assert l1(hard, im) > l1(mild, im) + 0.5, (seed, l1(mild, im), l1(hard, im))


@needs_lib
@pytest.mark.parametrize("name", [n for n in ALL if n not in ("impulse_noise", "glass_blur")])
def test_same_as_library_under_the_same_global_rng(name: str) -> None:
    import imagecorruptions

    im = scene(32)
    np.random.seed(11)
    expected = imagecorruptions.corrupt(im, corruption_name=name, severity=2)
    np.random.seed(11)
    np.testing.assert_array_equal(corrupt(im, name, 2), expected)


@needs_lib
@pytest.mark.parametrize("shape", [(32, 32, 3), (224, 224, 3), (40, 64, 3), (700, 300, 3),
                                   (200, 1000, 3)])
def test_cached_frost_is_the_library_s(shape: tuple[int, int, int]) -> None:
    """varcon keeps frost's textures decoded and rescaled; the output must stay bit-identical
    (the last two shapes exceed a texture's height / width: the upscaling branches)."""
    import imagecorruptions

    im = np.asarray(Image.fromarray(scene(64)).resize(shape[1::-1]))
    for seed, severity in ((0, 1), (1, 3), (2, 5), (3, 2), (4, 4), (5, 5), (6, 1), (7, 3)):
        np.random.seed(seed)
        expected = imagecorruptions.corrupt(im, corruption_name="frost", severity=severity)
        np.random.seed(seed)
        np.testing.assert_array_equal(corrupt(im, "frost", severity), expected)


@needs_lib
@pytest.mark.parametrize("name", ALL)
def test_seeded_is_bit_identical_and_leaves_caller_rng_alone(name: str) -> None:
    im = scene(32)
    np.random.seed(123)
    random.seed(5)
    np_state, py_state = np.random.get_state(), random.getstate()
    a = corrupt(im, name, 3, seed=7)
    after = np.random.get_state()
    assert after[0] == np_state[0] and np.array_equal(after[1], np_state[1]) and \
        after[2:] == np_state[2:]
    assert random.getstate() == py_state
    np.random.seed(999)  # a different caller state must not matter
    random.seed(17)
    np.testing.assert_array_equal(corrupt(im, name, 3, seed=7), a)
    # the 11 random ones depend on the seed; the other 8 draw nothing (and skip the RNG guard)
    assert np.array_equal(corrupt(im, name, 3, seed=8), a) == (name not in RANDOM)


@needs_lib
@pytest.mark.parametrize("name", ["impulse_noise", "glass_blur", "gaussian_noise", "fog"])
def test_unseeded_follows_numpy_global_rng(name: str) -> None:
    """seed=None: every corruption, also the two the library seeds from OS entropy, draws
    from np.random, so np.random.seed reproduces it."""
    im = scene(32)
    np.random.seed(4)
    a = corrupt(im, name, 4)
    np.random.seed(4)
    np.testing.assert_array_equal(corrupt(im, name, 4), a)


@needs_lib
@pytest.mark.parametrize("name", ALL)
def test_grayscale_layouts_and_channel_rule(name: str) -> None:
    """[H, W] and [H, W, 1] keep their layout; the 3-channel result is turned back by
    channel 0 (per-sample noises) or rounded luma (the rest)."""
    gray = np.rint(scene(32) @ LUMA).astype(np.uint8)
    out2 = corrupt(gray, name, 5, seed=2)
    out3 = corrupt(gray[:, :, None], name, 5, seed=2)
    assert out2.shape == (32, 32) and out3.shape == (32, 32, 1) and out2.dtype == np.uint8
    np.testing.assert_array_equal(out3[:, :, 0], out2)
    assert not np.array_equal(out2, gray)
    rgb = corrupt(np.repeat(gray[:, :, None], 3, axis=2), name, 5, seed=2)
    if name in ("gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise"):
        expected = rgb[:, :, 0]
    else:
        expected = np.rint(rgb @ LUMA).astype(np.uint8)
    np.testing.assert_array_equal(out2, expected)


@needs_lib
@pytest.mark.parametrize("name", ALL)
def test_digit_size_images(name: str) -> None:
    """8 x 8 (digits) and 10 x 40: every corruption runs, keeps the shape and changes
    the image at severity 5."""
    im8 = np.rint(scene(8) @ LUMA).astype(np.uint8)
    out = corrupt(im8, name, 5, seed=0)
    assert out.shape == (8, 8) and out.dtype == np.uint8 and not np.array_equal(out, im8)
    wide = np.asarray(Image.fromarray(scene(40)).resize((40, 10)))
    out = corrupt(wide, name, 5, seed=0)
    assert out.shape == (10, 40, 3) and not np.array_equal(out, wide)


@needs_lib
@pytest.mark.parametrize("name", ["defocus_blur", "snow", "jpeg_compression"])
def test_small_spatial_images_are_corrupted_at_32_px(name: str) -> None:
    """Below 32 px a spatial corruption runs on the image upsampled x s (nearest) and is
    averaged back over s x s blocks; 8 x 8 -> s = 4."""
    small = scene(8)
    big = np.repeat(np.repeat(small, 4, axis=0), 4, axis=1)
    expected = corrupt(big, name, 3, seed=9).reshape(8, 4, 8, 4, 3).mean(axis=(1, 3))
    np.testing.assert_array_equal(corrupt(small, name, 3, seed=9),
                                  np.rint(expected).astype(np.uint8))


@needs_lib
def test_small_pointwise_images_are_corrupted_at_their_size() -> None:
    """contrast at severity 3: (x/255 - mean) * 0.2 + mean, scaled back and truncated."""
    small = scene(8)
    x = small / 255.0
    m = x.mean(axis=(0, 1), keepdims=True)
    expected = (np.clip((x - m) * 0.2 + m, 0, 1) * 255).astype(np.uint8)
    np.testing.assert_array_equal(corrupt(small, "contrast", 3), expected)
    # pixelate keeps its own-size blocks: severity 5 on 8 px = 2 x 2 box averages
    px = corrupt(small, "pixelate", 5)
    assert np.all(px[0::4, 0::4] == px[1::4, 1::4]) and not np.array_equal(px, small)


@needs_lib
def test_bad_arguments() -> None:
    im = scene(32)
    with pytest.raises(ValueError, match=r"unknown corruption 'fogg'.*gaussian_noise.*saturate"):
        corrupt(im, "fogg", 1)
    for severity in (0, 6, 2.5, True):
        with pytest.raises(ValueError, match=r"severity must be an integer in 1..5"):
            corrupt(im, "fog", severity)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"uint8"):
        corrupt(im.astype(np.float32), "fog", 1)
    with pytest.raises(ValueError, match=r"\[H, W, 3\]"):
        corrupt(np.zeros((32, 32, 4), np.uint8), "fog", 1)
    with pytest.raises(ValueError, match=r"non-negative"):
        corrupt(im, "fog", 1, seed=-1)


def test_missing_library_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "imagecorruptions", None)  # import now raises ImportError
    with pytest.raises(ImportError, match=r'pip install "varcon\[robustness\]"'):
        corrupt(scene(32), "fog", 1)
    ds = TensorImageDataset(torch.zeros(2, 3, 32, 32, dtype=torch.uint8), [0, 1],
                            DatasetInfo("t", 2, ["a", "b"], 3, 32, (0.5,) * 3, (0.5,) * 3))
    with pytest.raises(ImportError, match=r'pip install "varcon\[robustness\]"'):
        CorruptedDataset(ds, "fog", 1)


# --------------------------------------------------------------------------- CorruptedDataset


def _tensor_dataset(n: int = 6, size: int = 32, channels: int = 3) -> TensorImageDataset:
    base = torch.from_numpy(scene(size)).permute(2, 0, 1)
    if channels == 1:
        base = torch.from_numpy(np.rint(scene(size) @ LUMA).astype(np.uint8))[None]
    images = base.unsqueeze(0).repeat(n, 1, 1, 1).contiguous()  # n identical images
    info = DatasetInfo("toy", 3, ["a", "b", "c"], channels, size, (0.5,) * channels,
                       (0.5,) * channels)
    return TensorImageDataset(images, [i % 3 for i in range(n)], info)


@needs_lib
def test_corrupted_dataset_items_independent_of_order_and_workers() -> None:
    base = _tensor_dataset()
    ds = CorruptedDataset(base, "gaussian_noise", 3, seed=5)
    assert len(ds) == 6 and ds.info is base.info and torch.equal(ds.targets, base.targets)
    forward = [ds[i] for i in range(6)]
    backward = [CorruptedDataset(base, "gaussian_noise", 3, seed=5)[i] for i in reversed(range(6))]
    for (img, lab), (img_b, lab_b) in zip(forward, reversed(backward), strict=True):
        assert img.dtype == torch.uint8 and img.shape == (3, 32, 32)
        assert torch.equal(img, img_b) and lab == lab_b
    assert [lab for _, lab in forward] == [0, 1, 2, 0, 1, 2]
    # identical clean images get different noise (the seed includes the index)
    assert not torch.equal(forward[0][0], forward[1][0])
    # same items through a 2-worker DataLoader, in batches of 4 and 2
    loader = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=2)
    batched = torch.cat([x for x, _ in loader])
    assert torch.equal(batched, torch.stack([x for x, _ in forward]))
    # the seed, severity and name all matter
    assert not torch.equal(CorruptedDataset(base, "gaussian_noise", 3, seed=6)[0][0],
                           forward[0][0])
    assert not torch.equal(CorruptedDataset(base, "gaussian_noise", 4, seed=5)[0][0],
                           forward[0][0])
    assert not torch.equal(CorruptedDataset(base, "shot_noise", 3, seed=5)[0][0],
                           forward[0][0])


@needs_lib
def test_corrupted_dataset_digits_and_errors() -> None:
    ds = CorruptedDataset(_tensor_dataset(n=3, size=8, channels=1), "motion_blur", 2, seed=0)
    img, _ = ds[2]
    assert img.shape == (1, 8, 8) and img.dtype == torch.uint8
    assert torch.equal(ds[-1][0], img)
    with pytest.raises(ValueError, match=r"unknown corruption"):
        CorruptedDataset(_tensor_dataset(), "blur", 1)
    with pytest.raises(ValueError, match=r"severity"):
        CorruptedDataset(_tensor_dataset(), "fog", 0)
    with pytest.raises(ValueError, match=r"integer seed"):
        CorruptedDataset(_tensor_dataset(), "fog", 1, seed=None)  # type: ignore[arg-type]
    no_info = torch.utils.data.Subset(_tensor_dataset(), [0, 1])
    assert not hasattr(CorruptedDataset(no_info, "fog", 1), "info")


@needs_lib
def test_glass_blur_dataset_warms_the_kernel_up_before_workers_fork(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Building a glass_blur dataset runs glass_blur once, in the building process: numba
    compiles the library's kernel there (4-5 s), and forked DataLoader workers inherit it
    instead of compiling it each (measured: 5.1 s in a fresh fork, 0.005 s after a warm-up)."""
    import varcon.evaluation.corruptions as module

    calls = []
    monkeypatch.setattr(module, "corrupt", lambda im, name, sev, seed=None: calls.append(name))
    CorruptedDataset(_tensor_dataset(n=1), "glass_blur", 2)
    assert calls == ["glass_blur"]
    CorruptedDataset(_tensor_dataset(n=1), "fog", 2)
    assert calls == ["glass_blur"]


# --------------------------------------------------------------------------- CIFAR-C reader


def _write_cifar_c(root, names=("gaussian_noise",), n: int = 4, labels_len: int | None = None,
                   size: int = 32) -> np.ndarray:
    """[5 * n, size, size, 3] with pixel value 10 * severity + index, labels (index + s) % 10."""
    root.mkdir(parents=True, exist_ok=True)
    arr = np.zeros((5 * n, size, size, 3), np.uint8)
    for s in range(5):
        for i in range(n):
            arr[s * n + i] = 10 * (s + 1) + i
    for name in names:
        np.save(root / f"{name}.npy", arr)
    labels = np.array([(i + s) % 10 for s in range(5) for i in range(n)], np.uint8)
    np.save(root / "labels.npy", labels if labels_len is None else labels[:labels_len])
    return arr


def test_cifar_c_reader_published_layout(tmp_path) -> None:
    _write_cifar_c(tmp_path)  # labels 5 * n long, as published (uint8 too)
    ds = CifarCDataset(tmp_path, "gaussian_noise", 3)
    assert len(ds) == 4
    img, label = ds[2]
    assert img.dtype == torch.uint8 and img.shape == (3, 32, 32)
    assert int(img.min()) == int(img.max()) == 32 and label == (2 + 2) % 10
    assert ds.targets.tolist() == [(i + 2) % 10 for i in range(4)]
    assert ds.targets.dtype == torch.long
    assert int(ds[-1][0][0, 0, 0]) == 33
    with pytest.raises(IndexError):
        ds[4]
    # memory-mapped, and pickles (DataLoader workers) without the pixels
    assert isinstance(ds._array(), np.memmap)
    clone = pickle.loads(pickle.dumps(ds))
    assert len(pickle.dumps(ds)) < 3000 and torch.equal(clone[1][0], ds[1][0])


def test_cifar_c_reader_short_labels(tmp_path) -> None:
    _write_cifar_c(tmp_path, labels_len=4)  # one label per image, shared by the severities
    for s in SEVERITIES:
        ds = CifarCDataset(tmp_path, "gaussian_noise", s)
        assert ds.targets.tolist() == [0, 1, 2, 3] and int(ds[0][0][0, 0, 0]) == 10 * s


def test_cifar_c_reader_errors(tmp_path) -> None:
    _write_cifar_c(tmp_path, labels_len=7)
    with pytest.raises(ValueError, match=r"7 labels.*4 images per severity"):
        CifarCDataset(tmp_path, "gaussian_noise", 1)
    np.save(tmp_path / "fog.npy", np.zeros((7, 32, 32, 3), np.uint8))
    with pytest.raises(ValueError, match=r"not a positive multiple of 5"):
        CifarCDataset(tmp_path, "fog", 1)
    np.save(tmp_path / "snow.npy", np.zeros((5, 32, 32, 3), np.float32))
    with pytest.raises(ValueError, match=r"expected uint8"):
        CifarCDataset(tmp_path, "snow", 1)
    with pytest.raises(ValueError, match=r"frost.npy does not exist"):
        CifarCDataset(tmp_path, "frost", 1)
    with pytest.raises(ValueError, match=r"unknown corruption"):
        CifarCDataset(tmp_path, "labels", 1)
    with pytest.raises(ValueError, match=r"severity"):
        CifarCDataset(tmp_path, "gaussian_noise", 6)
    (tmp_path / "labels.npy").unlink()
    with pytest.raises(ValueError, match=r"labels.npy does not exist"):
        CifarCDataset(tmp_path, "gaussian_noise", 1)


# --------------------------------------------------------------------------- ImageNet-C reader


def _write_imagenet_c(root, name: str = "gaussian_noise", severities=(1, 2)) -> dict:
    """Two classes (b: 2 images, a: 1 image) per severity; returns {path: array}."""
    written = {}
    rng = np.random.default_rng(0)
    for s in severities:
        for cls, count in (("n002_b", 2), ("n001_a", 1)):
            folder = root / name / str(s) / cls
            folder.mkdir(parents=True)
            for k in range(count):
                arr = rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)
                path = folder / f"img{k}.png"
                Image.fromarray(arr).save(path)
                written[str(path)] = arr
    return written


def test_imagenet_c_reader(tmp_path) -> None:
    written = _write_imagenet_c(tmp_path)
    # training label order differs from the sorted folder order; one class has no folder
    class_names = ["n003_c", "n002_b", "n001_a"]
    ds = ImageNetCDataset(tmp_path, "gaussian_noise", 2, class_names)
    assert len(ds) == 3 and sorted(ds.targets.tolist()) == [1, 1, 2]
    for i in range(3):
        img, label = ds[i]
        assert img.dtype == torch.uint8 and img.shape == (3, 12, 10)
        assert class_names[label] in ds.paths[i] and "/2/" in ds.paths[i]
        np.testing.assert_array_equal(img.permute(1, 2, 0).numpy(), written[ds.paths[i]])


def test_imagenet_c_reader_errors(tmp_path) -> None:
    _write_imagenet_c(tmp_path)
    with pytest.raises(ValueError, match=r"n002_b"):
        ImageNetCDataset(tmp_path, "gaussian_noise", 1, ["n001_a"])
    with pytest.raises(ValueError, match=r"gaussian_noise/3 does not exist"):
        ImageNetCDataset(tmp_path, "gaussian_noise", 3, ["n001_a", "n002_b"])
    with pytest.raises(ValueError, match=r"/fog does not exist"):
        ImageNetCDataset(tmp_path, "fog", 1, ["n001_a", "n002_b"])
    with pytest.raises(ValueError, match=r"duplicates"):
        ImageNetCDataset(tmp_path, "gaussian_noise", 1, ["n001_a", "n001_a"])
    (tmp_path / "snow" / "1" / "n001_a").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"holds no image file"):
        ImageNetCDataset(tmp_path, "snow", 1, ["n001_a"])


# --------------------------------------------------------------------------- layout detection


def test_layout_detection_and_listing(tmp_path) -> None:
    cifar = tmp_path / "cifar"
    _write_cifar_c(cifar, names=("spatter", "gaussian_noise", "zoom_blur"), n=1)
    np.save(cifar / "not_a_corruption.npy", np.zeros(3))
    assert detect_corruption_layout(cifar) == "cifar-c"
    assert available_corruptions(cifar) == ["gaussian_noise", "zoom_blur", "spatter"]
    inet = tmp_path / "inet"
    _write_imagenet_c(inet, "fog", (1,))
    _write_imagenet_c(inet, "contrast", (3,))
    (inet / "README.txt").write_text("x")
    assert detect_corruption_layout(str(inet)) == "imagenet-c"
    assert available_corruptions(inet) == ["fog", "contrast"]


def test_layout_errors(tmp_path) -> None:
    with pytest.raises(ValueError, match=r"does not exist"):
        detect_corruption_layout(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match=r"no corruption benchmark.*labels.npy.*<corruption>/"):
        available_corruptions(empty)
    only_labels = tmp_path / "only_labels"
    only_labels.mkdir()
    np.save(only_labels / "labels.npy", np.zeros(5, np.int64))
    with pytest.raises(ValueError, match=r"labels.npy but no <corruption>.npy.*gaussian_noise"):
        detect_corruption_layout(only_labels)
    no_labels = tmp_path / "no_labels"
    no_labels.mkdir()
    np.save(no_labels / "fog.npy", np.zeros((5, 32, 32, 3), np.uint8))
    with pytest.raises(ValueError, match=r"fog.npy but no labels.npy"):
        detect_corruption_layout(no_labels)
    no_sev = tmp_path / "no_sev"
    (no_sev / "fog" / "n001").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"no severity folder 1..5"):
        detect_corruption_layout(no_sev)
    both = tmp_path / "both"
    _write_cifar_c(both, n=1)
    (both / "fog" / "1").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"both"):
        detect_corruption_layout(both)
