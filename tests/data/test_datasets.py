"""build_dataset: digits, CIFAR pickles, ImageFolder trees (cache, bad files, errors)."""

from __future__ import annotations

import os
import tarfile
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import datasets as tv_datasets

import varcon.data.datasets as vd
from datagen import class_value, write_cifar_python, write_image_folder
from varcon.data import (
    CIFAR10_MEAN,
    DIGITS_MEAN,
    DIGITS_STD,
    DatasetInfo,
    ImageFileDataset,
    TensorImageDataset,
    build_dataset,
    compute_mean_std,
    decode_image_file,
)

# torchvision 0.29 deprecates its decoders (pytest resets varcon's module-level filter)
pytestmark = pytest.mark.filterwarnings("ignore:The image decoding:DeprecationWarning")

# ----------------------------------------------------------------------------- digits


def test_digits_split_is_fixed_stratified_75_25():
    train = build_dataset("digits", None, "train")
    test = build_dataset("digits", "/ignored", "test")
    assert len(train) + len(test) == 1797
    assert len(test) == 450  # ceil(0.25 * 1797)
    assert train.images.shape == (1347, 1, 8, 8) and train.images.dtype == torch.uint8
    x, y = train[5]
    assert x.shape == (1, 8, 8) and x.dtype == torch.uint8 and isinstance(y, int)
    assert int(train.images.max()) == 255 and int(train.images.min()) == 0
    assert train.targets.dtype == torch.long and train.targets.shape == (1347,)
    # stratified: each class's share is the same in both splits (within one image)
    tr = torch.bincount(train.targets, minlength=10).double()
    te = torch.bincount(test.targets, minlength=10).double()
    total = tr + te
    assert torch.all((tr - 0.75 * total).abs() <= 1.0)
    # deterministic, and the two splits are disjoint: no train image equals a test image
    again = build_dataset("digits", None, "train")
    assert torch.equal(again.images, train.images) and torch.equal(again.targets, train.targets)
    from sklearn.datasets import load_digits

    raw = np.rint(load_digits().images * 255 / 16).astype(np.uint8).reshape(1797, -1)
    keys = {r.tobytes(): i for i, r in enumerate(raw)}
    tr_idx = {keys[r.numpy().tobytes()] for r in train.images.reshape(len(train), -1)}
    te_idx = {keys[r.numpy().tobytes()] for r in test.images.reshape(len(test), -1)}
    assert len(tr_idx | te_idx) == len(set(keys.values()))


def test_digits_info_and_constants_match_data():
    ds = build_dataset("digits", None, "train")
    assert ds.info == DatasetInfo("digits", 10, [str(i) for i in range(10)], 1, 8,
                                  DIGITS_MEAN, DIGITS_STD)
    mean, std = compute_mean_std(ds)
    assert mean[0] == pytest.approx(DIGITS_MEAN[0], abs=1e-3)
    assert std[0] == pytest.approx(DIGITS_STD[0], abs=1e-3)


# ----------------------------------------------------------------------------- CIFAR


@pytest.mark.parametrize("kind,classes", [("cifar10", 10), ("cifar100", 100)])
def test_cifar_generated_pickles_load(tmp_path, kind, classes):
    write_cifar_python(tmp_path, kind, n_train=120, n_test=30)
    # torchvision itself rejects them (md5 of _check_integrity) ...
    tv_cls = tv_datasets.CIFAR10 if kind == "cifar10" else tv_datasets.CIFAR100
    with pytest.raises(RuntimeError, match="not found or corrupted"):
        tv_cls(tmp_path, train=True, download=False)
    # ... varcon reads them.
    train = build_dataset(kind, tmp_path, "train")
    test = build_dataset(kind, tmp_path, "test")
    assert isinstance(train, TensorImageDataset)
    assert train.images.shape == (120, 3, 32, 32) and train.images.dtype == torch.uint8
    assert train.images.is_contiguous()
    assert len(test) == 30 and test.targets.shape == (30,)
    # image/label pairing survives the HWC -> CHW conversion: label is in the first red pixel
    assert torch.equal(train.images[:, 0, 0, 0].long(), train.targets)
    assert torch.equal(test.images[:, 0, 0, 0].long(), test.targets)
    x, y = train[7]
    assert x.shape == (3, 32, 32) and y == int(train.targets[7])
    assert train.info.num_classes == classes == len(train.info.class_names)
    assert train.info.channels == 3 and train.info.image_size == 32
    if kind == "cifar10":
        assert train.info.class_names[0] == "airplane" and train.info.mean == CIFAR10_MEAN


def test_cifar_official_files_use_torchvision_unchanged(tmp_path, monkeypatch):
    """When md5 sums match, torchvision's own CIFAR10 class does the reading."""
    write_cifar_python(tmp_path, "cifar10", n_train=20, n_test=10)
    monkeypatch.setattr(vd, "check_integrity", lambda *a, **k: True)
    import torchvision.datasets.cifar as tvc

    monkeypatch.setattr(tvc, "check_integrity", lambda *a, **k: True)

    def refuse(*a, **k):
        raise AssertionError("the md5-free reader must not be used for verified files")

    monkeypatch.setattr(vd._LocalCIFAR10, "__init__", refuse)
    ds = build_dataset("cifar10", tmp_path, "train")
    assert len(ds) == 20


def test_cifar_missing_files_error_names_folder_files_and_download(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        build_dataset("cifar10", tmp_path, "train")
    msg = str(e.value)
    assert str(tmp_path / "cifar-10-batches-py") in msg
    assert "data_batch_1" in msg and "test_batch" in msg and "batches.meta" in msg
    assert "download: true" in msg
    folder = write_cifar_python(tmp_path, "cifar100", n_train=10, n_test=5)
    (folder / "meta").unlink()
    with pytest.raises(FileNotFoundError, match=r"missing meta in .*cifar-100-python"):
        build_dataset("cifar100", tmp_path, "test")


def test_cifar_corrupt_file_is_a_clear_error(tmp_path):
    folder = write_cifar_python(tmp_path, "cifar10", n_train=20, n_test=10)
    (folder / "data_batch_3").write_bytes(b"this is not a pickle")
    with pytest.raises(ValueError, match="corrupt or not the python version"):
        build_dataset("cifar10", tmp_path, "train")


def test_cifar_download_without_network_says_where_to_put_files(tmp_path, monkeypatch):
    def offline(*a, **k):
        raise OSError("network unreachable")

    monkeypatch.setattr(tv_datasets.CIFAR10, "download", offline)
    with pytest.raises(FileNotFoundError, match=r"download into .* failed"):
        build_dataset("cifar10", tmp_path, "train", download=True)


# ----------------------------------------------------------------------------- ImageFolder


def _labels_from_pixels(images: torch.Tensor, n_classes: int) -> torch.Tensor:
    levels = torch.tensor([class_value(k) for k in range(n_classes)], dtype=torch.float64)
    means = images.double().mean(dim=(1, 2, 3))
    return (means[:, None] - levels[None]).abs().argmin(dim=1)


@pytest.mark.parametrize("fmt", ["png", "jpeg"])
def test_imagefolder_loads_png_and_jpeg(tmp_path, fmt):
    write_image_folder(tmp_path, classes=("cat", "ant", "bee"), per_class=5, fmt=fmt)
    train = build_dataset("imagefolder", tmp_path, "train")
    val = build_dataset("imagefolder", tmp_path, "test")
    assert isinstance(train, TensorImageDataset)
    assert train.images.shape == (15, 3, 32, 32) and train.images.dtype == torch.uint8
    assert len(val) == 15
    assert train.info.class_names == ["ant", "bee", "cat"]  # sorted
    assert train.info.num_classes == 3 and train.info.channels == 3
    assert train.info.image_size == 32
    # labels follow sorted class names: "cat" was written as class 0 (pixel level)
    written = {"cat": 0, "ant": 1, "bee": 2}
    expect = torch.tensor([written[train.info.class_names[t]] for t in train.targets])
    assert torch.equal(_labels_from_pixels(train.images, 3), expect)
    x, y = val[0]
    assert x.dtype == torch.uint8 and x.shape == (3, 32, 32) and y == 0


def test_imagefolder_mixed_modes_become_rgb_uint8(tmp_path):
    modes = ["L", "LA", "RGBA", "P", "I;16", "RGB"]
    write_image_folder(tmp_path, classes=("a", "b"), per_class=12, mode=modes,
                       splits=("train",))
    for cache in ("memory", "none"):
        ds = build_dataset("imagefolder", tmp_path, "train", cache=cache,
                           cache_dir=tmp_path / "c")
        images = torch.stack([ds[i][0] for i in range(len(ds))])
        assert images.shape == (24, 3, 32, 32) and images.dtype == torch.uint8
        assert torch.equal(_labels_from_pixels(images, 2), ds.targets)
        # every image is about its class level (16-bit PNG scaled, alpha dropped)
        levels = torch.tensor([class_value(int(t)) for t in ds.targets], dtype=torch.float64)
        assert (images.double().mean(dim=(1, 2, 3)) - levels).abs().max() < 6


def test_decode_image_file_pil_fallback_and_16bit(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "x.bmp")  # not a torchvision.io format
    chw = torch.from_numpy(rgb).permute(2, 0, 1)
    assert torch.equal(decode_image_file(tmp_path / "x.bmp"), chw)
    Image.fromarray(rgb).save(tmp_path / "x.tiff")
    assert torch.equal(decode_image_file(tmp_path / "x.tiff"),
                       torch.from_numpy(rgb).permute(2, 0, 1))
    Image.fromarray(rgb[..., 0].astype(np.uint16) * 257).save(tmp_path / "g16.png")
    g = decode_image_file(tmp_path / "g16.png")
    assert g.dtype == torch.uint8 and g.shape == (3, 5, 7)
    assert torch.equal(g[1], torch.from_numpy(rgb[..., 0]))


def test_imagefolder_val_uses_train_class_indices(tmp_path):
    write_image_folder(tmp_path, classes=("a", "b", "c"), per_class=2, splits=("train",))
    write_image_folder(tmp_path, classes=("a", "c"), per_class=2, splits=("val",))
    val = build_dataset("imagefolder", tmp_path, "test")
    assert val.info.class_names == ["a", "b", "c"] and val.info.num_classes == 3
    assert sorted(set(val.targets.tolist())) == [0, 2]


def test_imagefolder_val_class_missing_from_train_is_named(tmp_path):
    write_image_folder(tmp_path, classes=("a", "b"), per_class=2, splits=("train",))
    write_image_folder(tmp_path, classes=("a", "zebra"), per_class=2, splits=("val",))
    with pytest.raises(ValueError, match="zebra"):
        build_dataset("imagefolder", tmp_path, "test")


def test_imagefolder_test_folder_when_val_absent(tmp_path):
    write_image_folder(tmp_path, per_class=2, splits=("train", "test"))
    assert len(build_dataset("imagefolder", tmp_path, "test")) == 6


def test_imagefolder_missing_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nowhere.*<root>/train/<class>"):
        build_dataset("imagefolder", tmp_path / "nowhere", "train")
    write_image_folder(tmp_path, per_class=1, splits=("train",))
    with pytest.raises(FileNotFoundError, match=r"val does not exist.*<root>/val"):
        build_dataset("imagefolder", tmp_path, "test")
    (tmp_path / "t2" / "train").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no class folder"):
        build_dataset("imagefolder", tmp_path / "t2", "train")
    (tmp_path / "val").mkdir()
    with pytest.raises(FileNotFoundError, match=r"no class folder in .*val"):
        build_dataset("imagefolder", tmp_path, "test")


def test_imagefolder_empty_class_folder_is_named(tmp_path):
    write_image_folder(tmp_path, classes=("a", "b"), per_class=2, splits=("train",))
    (tmp_path / "train" / "empty_one").mkdir()
    (tmp_path / "train" / "empty_one" / "notes.txt").write_text("not an image")
    with pytest.raises(ValueError, match=r"train/empty_one holds no image"):
        build_dataset("imagefolder", tmp_path, "train")


def _add_bad_files(root: Path) -> list[Path]:
    good = root / "train" / "a" / "0000.png"
    data = good.read_bytes()
    truncated = root / "train" / "a" / "trunc.png"
    truncated.write_bytes(data[: len(data) // 2])
    fake = root / "train" / "b" / "fake.jpg"
    fake.write_text("definitely not a jpeg")
    return [truncated, fake]


def test_bad_files_error_names_file_and_option(tmp_path):
    write_image_folder(tmp_path, classes=("a", "b"), per_class=3, splits=("train",))
    bad = _add_bad_files(tmp_path)
    with pytest.raises(ValueError) as e:
        build_dataset("imagefolder", tmp_path, "train", cache_dir=tmp_path / "c")
    msg = str(e.value)
    assert all(str(p) in msg for p in bad) and "bad_files='skip'" in msg
    assert not list((tmp_path / "c").glob("*.pt"))  # nothing cached on failure


def test_bad_files_skip_warns_with_count_and_files(tmp_path):
    write_image_folder(tmp_path, classes=("a", "b"), per_class=3, splits=("train",))
    bad = _add_bad_files(tmp_path)
    with pytest.warns(UserWarning, match="skipped 2 unreadable") as rec:
        ds = build_dataset("imagefolder", tmp_path, "train", bad_files="skip")
    msg = next(str(w.message) for w in rec if issubclass(w.category, UserWarning))
    assert all(str(p) in msg for p in bad)
    assert len(ds) == 6 and ds.targets.tolist() == [0, 0, 0, 1, 1, 1]


def test_bad_files_lazy_mode(tmp_path):
    write_image_folder(tmp_path, classes=("a", "b"), per_class=3, splits=("train",))
    truncated, fake = _add_bad_files(tmp_path)
    with pytest.warns(UserWarning, match="skipped 1 unreadable") as rec:
        ds = build_dataset("imagefolder", tmp_path, "train", cache="none", bad_files="skip")
    assert str(fake) in next(str(w.message) for w in rec if issubclass(w.category, UserWarning))
    assert isinstance(ds, ImageFileDataset) and len(ds) == 7
    i = ds.paths.index(str(truncated))  # header fine, data truncated: found when decoded
    with pytest.raises(ValueError, match=r"trunc\.png"):
        ds[i]
    assert ds[0][0].shape == (3, 32, 32)


def test_cache_written_reused_and_invalidated(tmp_path, monkeypatch):
    write_image_folder(tmp_path, classes=("a", "b"), per_class=3, splits=("train", "val"))
    ds = build_dataset("imagefolder", tmp_path, "train")
    cache_dir = tmp_path / ".varcon_cache"  # the default location
    files = sorted(cache_dir.glob("*.pt"))
    assert len(files) == 1 and ds.cache_file == files[0]
    assert not list(cache_dir.glob(".*.tmp-*"))  # atomic write left no temporary file

    calls = []
    real = vd._decode_all
    monkeypatch.setattr(vd, "_decode_all", lambda *a: calls.append(1) or real(*a))
    again = build_dataset("imagefolder", tmp_path, "train")
    assert calls == [] and torch.equal(again.images, ds.images)  # reused, nothing decoded
    assert torch.equal(again.targets, ds.targets)

    val = build_dataset("imagefolder", tmp_path, "test")  # its own cache entry
    assert calls == [1] and len(sorted(cache_dir.glob("*.pt"))) == 2 and len(val) == 6

    Image.open(tmp_path / "train" / "a" / "0000.png").save(tmp_path / "train" / "a" / "new.png")
    grown = build_dataset("imagefolder", tmp_path, "train")
    assert calls == [1, 1] and len(grown) == 7
    assert grown.cache_file != ds.cache_file and not ds.cache_file.exists()  # stale one removed

    # a file rewritten with different content (size/mtime change) also invalidates
    p = tmp_path / "train" / "b" / "0001.png"
    Image.new("RGB", (32, 32), (255, 0, 0)).save(p)
    os.utime(p, ns=(1, 1))
    changed = build_dataset("imagefolder", tmp_path, "train")
    assert calls == [1, 1, 1]
    assert changed.images[changed.targets == 1][1, 0].float().mean() == 255


def test_cache_falls_back_to_home_cache_when_root_not_writable(tmp_path, monkeypatch):
    write_image_folder(tmp_path / "data", per_class=2, splits=("train",))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    real = vd._writable_dir
    monkeypatch.setattr(vd, "_writable_dir",
                        lambda d: False if ".varcon_cache" in str(d) else real(d))
    ds = build_dataset("imagefolder", tmp_path / "data", "train")
    assert ds.cache_file.parent == tmp_path / "xdg" / "varcon"
    assert not (tmp_path / "data" / ".varcon_cache").exists()


def test_sizes_differ_needs_image_size(tmp_path):
    write_image_folder(tmp_path, per_class=2, size=[(32, 32), (24, 40)], splits=("train",))
    with pytest.raises(ValueError, match=r"differ in size.*image_size"):
        build_dataset("imagefolder", tmp_path, "train")
    ds = build_dataset("imagefolder", tmp_path, "train", image_size=16)
    assert ds.images.shape == (6, 3, 16, 16) and ds.info.image_size == 16


def test_large_images_decode_lazily(tmp_path):
    write_image_folder(tmp_path, per_class=2, size=[(96, 80), (120, 100)], fmt="jpeg",
                       splits=("train",))
    ds = build_dataset("imagefolder", tmp_path, "train")
    assert isinstance(ds, ImageFileDataset) and ds.info.image_size == 224
    assert not (tmp_path / ".varcon_cache").exists() or not list(
        (tmp_path / ".varcon_cache").glob("*.pt"))
    shapes = {tuple(ds[i][0].shape) for i in range(len(ds))}
    assert shapes == {(3, 80, 96), (3, 100, 120)}
    assert ds.targets.tolist() == [0, 0, 1, 1, 2, 2]
    small = build_dataset("imagefolder", tmp_path, "train", image_size=48)  # <= 64: cached
    assert isinstance(small, TensorImageDataset) and small.images.shape == (6, 3, 48, 48)


def test_stats_compute_option(tmp_path):
    write_image_folder(tmp_path, classes=("a", "b"), per_class=2, splits=("train",))
    ds = build_dataset("imagefolder", tmp_path, "train")
    assert ds.info.mean == (0.485, 0.456, 0.406)
    ds2 = build_dataset("imagefolder", tmp_path, "train", stats="compute")
    level = (class_value(0) + class_value(1)) / 2 / 255
    assert all(m == pytest.approx(level, abs=0.01) for m in ds2.info.mean)
    assert list((tmp_path / ".varcon_cache").glob("stats-*.json"))


def test_compute_mean_std_values_and_json_cache(tmp_path, monkeypatch):
    images = torch.zeros(4, 2, 3, 3, dtype=torch.uint8)
    images[:, 0] = 255
    images[:2, 1] = 0
    images[2:, 1] = 255
    info = DatasetInfo("t", 1, ["x"], 2, 3, (0.5, 0.5), (0.5, 0.5))
    ds = TensorImageDataset(images, [0, 0, 0, 0], info)
    mean, std = compute_mean_std(ds, cache_path=tmp_path / "s.json")
    assert mean == pytest.approx((1.0, 0.5)) and std == pytest.approx((0.0, 0.5))

    class Plain(torch.utils.data.Dataset):  # no .images: the per-item path
        def __len__(self):
            return 4

        def __getitem__(self, i):
            return images[i], 0

    m2, s2 = compute_mean_std(Plain())
    assert m2 == pytest.approx(mean) and s2 == pytest.approx(std)
    monkeypatch.setattr(torch.Tensor, "double", lambda *a: pytest.fail("recomputed"))
    assert compute_mean_std(ds, cache_path=tmp_path / "s.json") == (mean, std)


def test_bad_arguments_are_value_errors(tmp_path):
    for kwargs, word in [({"name": "mnist"}, "unknown dataset"), ({"split": "val"}, "split"),
                         ({"cache": "disk"}, "cache"), ({"bad_files": "ignore"}, "bad_files"),
                         ({"image_size": 0}, "image_size")]:
        args = {"name": "digits", "root": None, "split": "train", **kwargs}
        with pytest.raises(ValueError, match=word):
            build_dataset(args.pop("name"), args.pop("root"), args.pop("split"), **args)
    with pytest.raises(ValueError, match="root is not set"):
        build_dataset("cifar10", None, "train")


# ----------------------------------------------------------------------------- real data


def _shared_dir() -> Path:
    env = os.environ.get("VARCON_SHARED_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / ".." / "shared"


def test_real_cifar10_jpeg_tree(tmp_path):
    archive = _shared_dir() / "data" / "cifar10-jpeg.tar.gz"
    if not archive.is_file():
        pytest.skip(f"real CIFAR-10 JPEG archive not found at {archive} (set VARCON_SHARED_DIR "
                    "to the folder holding data/cifar10-jpeg.tar.gz)")
    wanted = ("cifar10/val/airplane/", "cifar10/val/frog/")
    with tarfile.open(archive) as tar:
        members = [m for m in tar if m.name.startswith(wanted) and m.isfile()]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            tar.extractall(tmp_path, members=members, filter="data")
    root = tmp_path / "cifar10"
    os.symlink(root / "val", root / "train")  # same tree as train: classes match
    ds = build_dataset("imagefolder", root, "test", cache_dir=tmp_path / "cache")
    assert ds.images.shape == (1000, 3, 32, 32) and ds.images.dtype == torch.uint8
    assert ds.info.class_names == ["airplane", "frog"]
    assert torch.bincount(ds.targets).tolist() == [500, 500]
    mean, std = compute_mean_std(ds)
    # real photos: mean/std near CIFAR-10's (two classes only, loose bounds)
    assert all(abs(m - c) < 0.1 for m, c in zip(mean, CIFAR10_MEAN, strict=True))
    assert all(0.15 < s < 0.35 for s in std)
    lazy = build_dataset("imagefolder", root, "test", cache="none")
    for i in (0, 499, 500, 999):
        assert torch.equal(lazy[i][0], ds[i][0]) and lazy[i][1] == ds[i][1]
