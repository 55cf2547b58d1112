"""ImageFileDataset keeps its paths as one NumPy buffer (PathArray), items unchanged."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader
from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

from datagen import write_image_folder
from varcon.data import ImageFileDataset, build_dataset, decode_image_file
from varcon.data.datasets import PathArray

pytestmark = pytest.mark.filterwarnings("ignore:The image decoding:DeprecationWarning")

CLASSES = ("alpha", "béta", "日本")


def _tree(tmp_path: Path) -> Path:
    root = write_image_folder(tmp_path / "tree", classes=CLASSES, per_class=4, fmt="jpeg",
                              size=[(40, 30), (24, 36)], splits=("train", "val"))
    # non-ASCII file names too (class folders already are)
    for split in ("train", "val"):
        d = root / split / "béta"
        (d / "0000.jpg").rename(d / "zé_ü.jpg")
        (d / "0001.jpg").rename(d / "写真.jpg")
    return root


def _reference(root: Path, split: str) -> list[tuple[str, int]]:
    """The (path, label) list the dataset read before PathArray: torchvision's scan order."""
    _, class_to_idx = find_classes(root / "train")
    folder = root / ("train" if split == "train" else "val")
    return make_dataset(str(folder), class_to_idx, extensions=IMG_EXTENSIONS)


@pytest.mark.parametrize("split", ["train", "test"])
def test_items_and_order_unchanged(tmp_path, split):
    root = _tree(tmp_path)
    ds = build_dataset("imagefolder", root, split, cache="none")
    assert isinstance(ds, ImageFileDataset)
    ref = _reference(root.resolve(), split)
    assert len(ds) == len(ref) == 12
    assert list(ds.paths) == [p for p, _ in ref] and ds.paths == [p for p, _ in ref]
    assert ds.targets.tolist() == [t for _, t in ref] and ds.targets.dtype == torch.long
    for i, (p, t) in enumerate(ref):
        image, label = ds[i]
        assert label == t and isinstance(label, int)
        assert torch.equal(image, decode_image_file(p))
        assert ds.encoded(i).path == p and torch.equal(ds.encoded(i).decode(), image)
    assert any("写真" in p for p in ds.paths) and any("zé_ü" in p for p in ds.paths)


def test_storage_is_numpy_not_a_list(tmp_path):
    ds = build_dataset("imagefolder", _tree(tmp_path), "train", cache="none")
    assert isinstance(ds.paths, PathArray)
    assert isinstance(ds.paths._buffer, np.ndarray) and ds.paths._buffer.dtype == np.uint8
    assert isinstance(ds.paths._offsets, np.ndarray) and ds.paths._offsets.dtype == np.int64
    assert not any(isinstance(v, (list, tuple)) for v in vars(ds).values())
    assert isinstance(ds.targets, torch.Tensor)
    assert ds.paths.nbytes == sum(len(os.fsencode(p)) for p in ds.paths) + 8 * (len(ds) + 1)


def test_dataloader_workers_read_the_same_items(tmp_path):
    ds = build_dataset("imagefolder", _tree(tmp_path), "train", cache="none")
    loader = DataLoader(ds, batch_size=None, num_workers=2)
    got = [(img, y) for img, y in loader]
    assert len(got) == len(ds)
    for i, (img, y) in enumerate(got):
        assert y == ds[i][1] and torch.equal(img, ds[i][0])


def test_path_array_is_a_sequence_of_str():
    paths = ["/a/b.jpg", "/ü/日本.png", "", "/x/" + "y" * 300 + ".jpg", Path("/p/q.jpg")]
    arr = PathArray(paths)
    as_str = [os.fspath(p) for p in paths]
    assert len(arr) == 5 and list(arr) == as_str and arr == as_str and arr == tuple(as_str)
    assert [arr[i] for i in range(-5, 5)] == as_str + as_str
    assert arr[1:4] == as_str[1:4] and arr[::-2] == as_str[::-2] and arr[np.int64(1)] == as_str[1]
    assert arr.index("/ü/日本.png") == 1 and "/a/b.jpg" in arr and "/nope" not in arr
    with pytest.raises(IndexError):
        arr[5]
    with pytest.raises(IndexError):
        arr[-6]
    with pytest.raises(ValueError):
        arr.index("/nope")
    assert all(type(p) is str for p in arr)
    assert PathArray(arr) == arr and arr != ["/a/b.jpg"] and PathArray([]) == []
    back = pickle.loads(pickle.dumps(arr))
    assert back == arr and list(back) == as_str
    assert "5 paths" in repr(arr)


def test_undecodable_bytes_round_trip():
    """A file name that is not valid UTF-8 (kept by surrogateescape) comes back unchanged."""
    raw = b"/data/\xff\xfe-img.jpg"
    name = os.fsdecode(raw)
    arr = PathArray([name, "/ok.jpg"])
    assert arr[0] == name and os.fsencode(arr[0]) == raw and arr[1] == "/ok.jpg"


def test_targets_length_checked():
    from varcon.data import DatasetInfo
    info = DatasetInfo("x", 2, ["a", "b"], 3, 224, (0.5,) * 3, (0.5,) * 3)
    with pytest.raises(ValueError, match="2 paths but 3 targets"):
        ImageFileDataset(["/a.jpg", "/b.jpg"], [0, 1, 1], info)
    ds = ImageFileDataset(["/a.jpg", "/b.jpg"], torch.tensor([1, 0], dtype=torch.int32), info)
    assert ds.targets.dtype == torch.long and ds.targets.tolist() == [1, 0]
