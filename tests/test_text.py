"""``varcon._text.shorten`` and the messages that list the user's items with it: the first
10, then "... and M more"."""

from __future__ import annotations

import pytest

from datagen import write_image_folder
from varcon._text import SHOWN, shorten
from varcon.data import build_dataset
from varcon.data.subsets import resolve_classes


def test_shorten_edge_cases():
    assert SHOWN == 10
    assert shorten([]) == ""
    assert shorten(["a"]) == "a"
    ten = [f"c{i}" for i in range(10)]
    assert shorten(ten) == ", ".join(ten)  # exactly the limit: all of them, no "more"
    assert shorten([*ten, "c10"]) == ", ".join(ten) + ", ... and 1 more"
    assert shorten(iter(range(5)), 2) == "0, 1, ... and 3 more"  # any iterable, str() each
    assert shorten(["x", "y", "z"], 1, sep="\n  ") == "x\n  ... and 2 more"
    with pytest.raises(ValueError, match="limit"):
        shorten(["a"], 0)


def test_676_empty_class_folders_name_ten(tmp_path):
    write_image_folder(tmp_path, classes=("a", "b"), per_class=1, splits=("train",))
    names = [f"{x}{y}" for x in "abcdefghijklmnopqrstuvwxyz" for y in "abcdefghijklmnopqrstuvwxyz"]
    for name in names:  # 676 class folders without an image
        (tmp_path / "train" / f"z{name}").mkdir()
    with pytest.raises(ValueError) as info:
        build_dataset("imagefolder", tmp_path, "train")
    text = str(info.value)
    assert "676 class folders in" in text and "hold no image file" in text
    assert ", ".join(f"z{n}" for n in names[:10]) + ", ... and 666 more." in text
    assert f"z{names[10]}" not in text and len(text) < 600


def test_val_folders_that_train_lacks_are_shortened(tmp_path):
    write_image_folder(tmp_path, classes=("a", "b"), per_class=1)
    for i in range(30):
        (tmp_path / "val" / f"extra{i:02d}").mkdir()
    with pytest.raises(ValueError) as info:
        build_dataset("imagefolder", tmp_path, "test")
    text = str(info.value)
    assert "30 class folder(s)" in text and "extra09, ... and 20 more" in text
    assert "extra10" not in text


def test_unknown_classes_list_fifty_of_the_dataset_and_the_rest_counted():
    names = [f"k{i}" for i in range(120)]
    with pytest.raises(ValueError) as info:
        resolve_classes(["nope"], names, key="data.classes")
    text = str(info.value)
    assert "['nope'] are not classes" in text and "k49, ... and 70 more" in text
    assert "k50" not in text
