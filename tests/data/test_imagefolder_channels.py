"""Grayscale ImageFolder trees (``data.channels=1``): files decode to their luminance
``[1, H, W]`` on every path (per item, the decoded cache, the reduced JPEG decode); RGB stays
the default and keeps its cache key; other datasets refuse another channel count; the
normalisation defaults follow the channels."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from datagen import class_value, write_image_folder
from varcon.data import (
    IMAGENET_GRAY_MEAN,
    IMAGENET_GRAY_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    build_dataset,
    decode_image_file,
)
from varcon.data import datasets as D
from varcon.data.datasets import EncodedImage
from varcon.runtime.config import ConfigError, config_from_dict


def _luminance(rgb: np.ndarray) -> np.ndarray:
    """ITU-R 601 luma of uint8 [H, W, 3], as PIL's ``convert("L")`` rounds it."""
    r, g, b = (rgb[..., i].astype(np.int64) for i in range(3))
    return ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16).astype(np.uint8)


@pytest.fixture
def colour_png(tmp_path: Path) -> tuple[Path, np.ndarray]:
    rgb = np.random.default_rng(0).integers(0, 256, size=(6, 9, 3), dtype=np.uint8)
    path = tmp_path / "colour.png"
    Image.fromarray(rgb, "RGB").save(path)
    return path, rgb


@pytest.mark.parametrize("fmt", ["png", "bmp"])  # torchvision's decoder, then PIL's
def test_colour_file_decodes_to_its_luminance(tmp_path, fmt):
    rgb = np.random.default_rng(1).integers(0, 256, size=(5, 7, 3), dtype=np.uint8)
    path = tmp_path / f"c.{fmt}"
    Image.fromarray(rgb, "RGB").save(path)
    gray = decode_image_file(path, channels=1)
    assert gray.shape == (1, 5, 7) and gray.dtype == torch.uint8
    diff = (gray[0].numpy().astype(int) - _luminance(rgb).astype(int))
    assert np.abs(diff).max() <= 1  # libpng/PIL rounding
    assert decode_image_file(path).shape == (3, 5, 7)  # RGB stays the default


@pytest.mark.parametrize("mode", ["L", "I;16"])
def test_grayscale_file_keeps_its_values(tmp_path, mode):
    values = np.random.default_rng(2).integers(0, 256, size=(4, 6), dtype=np.uint8)
    path = tmp_path / "g.png"
    image = (Image.fromarray(values, "L") if mode == "L"
             else Image.fromarray(values.astype(np.uint16) * 257))
    image.save(path)
    gray = decode_image_file(path, channels=1)
    assert torch.equal(gray[0], torch.from_numpy(values))
    rgb = decode_image_file(path, channels=3)
    assert all(torch.equal(rgb[c], gray[0]) for c in range(3))


def test_bad_channel_count_is_refused(colour_png):
    path, _ = colour_png
    with pytest.raises(ValueError, match=r"1 \(grayscale\) or 3 \(RGB\) channels, got 2"):
        decode_image_file(path, channels=2)


def test_reduced_jpeg_decode_gives_one_channel(tmp_path):
    rgb = np.random.default_rng(3).integers(0, 256, size=(64, 48, 3), dtype=np.uint8)
    path = tmp_path / "big.jpg"
    Image.fromarray(rgb, "RGB").save(path, "JPEG", quality=95)
    encoded = EncodedImage(torch.from_numpy(np.fromfile(path, dtype=np.uint8)), path,
                           channels=1)
    assert encoded.size == (64, 48)
    full, half = encoded.decode(), encoded.decode(2)
    assert full.shape == (1, 64, 48) and half.shape == (1, 32, 24)
    # the half-scale decode averages 2x2 blocks of the same luminance
    pooled = torch.nn.functional.avg_pool2d(full[None].float(), 2)[0]
    assert (pooled - half.float()).abs().mean() < 4


@pytest.mark.parametrize("cache", ["memory", "none"])
def test_grayscale_tree_on_both_loading_paths(tmp_path, cache):
    root = write_image_folder(tmp_path / "tree", per_class=3, size=(8, 8), mode="RGB")
    ds = build_dataset("imagefolder", root, "train", cache=cache, channels=1,
                       cache_dir=tmp_path / "cache")
    assert ds.info.channels == 1
    assert ds.info.mean == IMAGENET_GRAY_MEAN and ds.info.std == IMAGENET_GRAY_STD
    image, label = ds[0]
    assert image.shape == (1, 8, 8) and image.dtype == torch.uint8
    # pixels are about the class's grey level (+- 8 noise per channel)
    assert abs(float(image.float().mean()) - class_value(label)) < 8
    rgb = build_dataset("imagefolder", root, "train", cache=cache,
                        cache_dir=tmp_path / "cache")
    assert rgb.info.channels == 3 and rgb.info.mean == IMAGENET_MEAN
    assert rgb.info.std == IMAGENET_STD and rgb[0][0].shape == (3, 8, 8)


def test_gray_and_rgb_caches_do_not_mix(tmp_path):
    root = write_image_folder(tmp_path / "tree", per_class=2, size=(8, 8))
    kw = dict(cache="memory", cache_dir=tmp_path / "cache")
    first = build_dataset("imagefolder", root, "train", channels=1, **kw)
    rgb = build_dataset("imagefolder", root, "train", **kw)
    again = build_dataset("imagefolder", root, "train", channels=1, **kw)
    assert first.cache_file != rgb.cache_file
    assert rgb.images.shape[1] == 3
    assert again.images.shape[1] == 1 and torch.equal(again.images, first.images)


def test_rgb_cache_key_is_unchanged(tmp_path):
    """Caches decoded before data.channels existed stay valid: the RGB key hashes what it
    always did."""
    root = write_image_folder(tmp_path / "tree", classes=("a", "b"), per_class=2)
    paths, labels, classes = D._scan_tree(root, "train")
    h = hashlib.sha256()
    h.update(json.dumps([D._CACHE_VERSION, "train", 16, "error", list(classes)]).encode())
    for p, t in zip(paths, labels, strict=True):
        st = os.stat(p)
        h.update(f"{os.path.relpath(p, root)}\0{t}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    old = h.hexdigest()[:20]
    assert D._tree_key(root, "train", paths, labels, classes, 16, "error") == old
    assert D._tree_key(root, "train", paths, labels, classes, 16, "error", 3) == old
    assert D._tree_key(root, "train", paths, labels, classes, 16, "error", 1) != old


def test_computed_statistics_have_one_channel(tmp_path):
    root = write_image_folder(tmp_path / "tree", per_class=3, size=(8, 8))
    ds = build_dataset("imagefolder", root, "train", channels=1, stats="compute",
                       cache_dir=tmp_path / "cache")
    assert len(ds.info.mean) == len(ds.info.std) == 1
    expected = ds.images.double().mean().item() / 255
    assert ds.info.mean[0] == pytest.approx(expected, abs=1e-6)
    stats = sorted(p.name for p in (tmp_path / "cache").glob("stats-*.json"))
    assert len(stats) == 1 and stats[0].endswith("-gray.json")


@pytest.mark.parametrize(("name", "channels"), [("digits", 3), ("cifar10", 1)])
def test_other_datasets_refuse_another_channel_count(name, channels):
    with pytest.raises(ValueError, match=rf"{name} images have \d channel\(s\); "
                                         rf"channels={channels} \(data.channels\)"):
        build_dataset(name, "/nowhere", "train", channels=channels)


def test_digits_accepts_its_own_channel_count():
    assert build_dataset("digits", None, "train", channels=1).info.channels == 1


@pytest.mark.parametrize(("overrides", "needle"), [
    ({"data": {"channels": 2}}, "data.channels: 1 (grayscale) or 3 (RGB), got 2"),
    ({"data": {"channels": 3}}, "data.channels: digits images have 1 channel(s)"),
])
def test_config_refuses_bad_channels(overrides, needle):
    with pytest.raises(ConfigError) as info:
        config_from_dict(overrides)
    assert needle in str(info.value)


def test_config_accepts_channels_for_imagefolder():
    cfg = config_from_dict({"data": {"dataset": "imagefolder", "root": "/x", "channels": 1}})
    assert cfg.data.channels == 1


def test_pretrain_and_evaluate_on_a_grayscale_tree(tmp_path, capsys):
    """``data.channels=1`` trains a 1-channel encoder on a tree of grey files; evaluation
    reads the tree with the encoder's channels without being told."""
    from clitools import read_json, run_cli
    from varcon.runtime.checkpoint import load_network

    root = write_image_folder(tmp_path / "tree", classes=("a", "b"), per_class=8,
                              size=(8, 8), mode="L")
    run = tmp_path / "run"
    code, _, err = run_cli(
        capsys, "pretrain", "--output-dir", str(run), "data.dataset=imagefolder",
        f"data.root={root}", "data.channels=1", "model.encoder=small_cnn",
        "optim.batch_size=8", "optim.epochs=1", "optim.warmup_epochs=0",
        "data.num_workers=0", "data.augment_params={}", "linear.run_after_pretrain=false",
        "train.progress=off", "train.tau2_every=0")
    assert code == 0, err
    _net, state = load_network(run / "checkpoints" / "last.pt")
    assert state["network"]["in_channels"] == 1
    assert state["network"]["mean"] == list(IMAGENET_GRAY_MEAN)
    code, _, err = run_cli(capsys, "knn", "--checkpoint", str(run), "knn.k=[3]",
                           "data.num_workers=0", "train.progress=off")
    assert code == 0, err
    record = read_json(run / "eval" / "knn.json")
    assert record["class_names"] == ["a", "b"] and 0 <= record["results"]["top1"]["3"] <= 100
