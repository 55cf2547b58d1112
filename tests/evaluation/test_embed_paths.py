"""varcon embed over a folder: the items workers read keep their paths in a PathArray."""

from __future__ import annotations

import pytest
import torch

from datagen import write_image_folder
from varcon.data import decode_image_file
from varcon.data.datasets import PathArray
from varcon.evaluation.embed import _Items, _scan_folder

pytestmark = pytest.mark.filterwarnings("ignore:The image decoding:DeprecationWarning")


def test_folder_items_use_a_path_array(tmp_path):
    root = write_image_folder(tmp_path, classes=("a", "ü"), per_class=2, fmt="jpeg",
                              splits=("train",)) / "train"
    source = _scan_folder(root)
    items = _Items(source, lambda image: image.float())
    assert isinstance(items.paths, PathArray) and list(items.paths) == source.paths
    for i in range(len(items)):
        image, index, error = items[i]
        assert error is None and index == i
        assert torch.equal(image, decode_image_file(source.paths[i]).float())
