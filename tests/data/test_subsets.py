"""Class subsets: keep or drop classes by name or index (labels renumbered 0..K-1 in the
dataset's class order, the same on every split), and seeded class-balanced subsets; through
the config keys data.classes / data.exclude_classes / data.per_class."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from varcon.data.datasets import DatasetInfo
from varcon.data.subsets import ClassSubset, resolve_classes, select_classes, take_per_class
from varcon.runtime.config import ConfigError, config_from_dict
from varcon.runtime.data import build_split, build_train_data

NAMES = ["cat", "dog", "owl", "ant", "bee"]


class Toy(torch.utils.data.Dataset):
    """Image i is a [1, 2, 2] tensor filled with i; labels as given."""

    def __init__(self, labels: list[int]) -> None:
        self.targets = torch.tensor(labels)
        self.info = DatasetInfo("toy", len(NAMES), list(NAMES), 1, 2, (0.5,), (0.5,))

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return torch.full((1, 2, 2), i, dtype=torch.uint8), int(self.targets[i])


def items(ds) -> list[tuple[int, int]]:
    """(image id, label) of every item."""
    return [(int(ds[i][0][0, 0, 0]), ds[i][1]) for i in range(len(ds))]


LABELS = [0, 1, 2, 3, 4, 4, 3, 2, 1, 0, 2, 2]


def test_resolve_names_indices_and_digit_names():
    assert resolve_classes(["owl", 0, "bee"], NAMES) == [2, 0, 4]
    digits = [str(i) for i in range(10)]
    assert resolve_classes(["3", 7], digits) == [3, 7]


@pytest.mark.parametrize("bad", [["cow"], [5], [-1], [True], ["Cat"]])
def test_unknown_classes_list_the_valid_ones(bad):
    with pytest.raises(ValueError) as info:
        resolve_classes(bad, NAMES, key="data.classes")
    text = str(info.value)
    assert text.startswith("data.classes:") and repr(bad[0]) in text
    assert "cat, dog, owl, ant, bee" in text and "0..4" in text


def test_select_by_name_and_index_relabels_in_dataset_order():
    ds = Toy(LABELS)
    # given out of order, with a name and an index: kept in the dataset's own order
    sub = select_classes(ds, ["bee", 1])
    assert isinstance(sub, ClassSubset)
    assert sub.info.class_names == ["dog", "bee"] and sub.info.num_classes == 2
    assert sub.info.channels == 1 and sub.info.mean == (0.5,)
    assert items(sub) == [(1, 0), (4, 1), (5, 1), (8, 0)]
    assert sub.targets.tolist() == [0, 1, 1, 0]


def test_exclude_and_combined():
    ds = Toy(LABELS)
    sub = select_classes(ds, exclude_classes=["owl", 0])
    assert sub.info.class_names == ["dog", "ant", "bee"]
    assert items(sub) == [(1, 0), (3, 1), (4, 2), (5, 2), (6, 1), (8, 0)]
    both = select_classes(ds, classes=["dog", "owl", "ant"], exclude_classes=["owl"])
    assert both.info.class_names == ["dog", "ant"]
    assert items(both) == [(1, 0), (3, 1), (6, 1), (8, 0)]


def test_nothing_removed_returns_the_dataset_itself():
    ds = Toy(LABELS)
    assert select_classes(ds) is ds
    assert select_classes(ds, classes=NAMES) is ds
    assert take_per_class(ds, 100) is ds


def test_empty_selection_is_an_error():
    with pytest.raises(ValueError, match="leave no class"):
        select_classes(Toy(LABELS), classes=["owl"], exclude_classes=[2])
    with pytest.raises(ValueError, match="per_class must be >= 1"):
        take_per_class(Toy(LABELS), 0)


def test_same_selection_numbers_train_and_test_alike():
    train, test = Toy(LABELS), Toy([4, 1, 1, 4, 0, 2])
    a, b = select_classes(train, ["bee", "dog"]), select_classes(test, ["dog", "bee"])
    assert a.info.class_names == b.info.class_names == ["dog", "bee"]
    assert items(b) == [(0, 1), (1, 0), (2, 0), (3, 1)]


def test_take_per_class_is_balanced_seeded_and_in_order():
    ds = Toy([c for c in range(5) for _ in range(10)])  # 10 images per class
    sub = take_per_class(ds, 3, seed=0)
    ids = [i for i, _ in items(sub)]
    assert len(ids) == 15 and ids == sorted(ids)  # dataset order kept
    assert torch.bincount(sub.targets).tolist() == [3] * 5
    assert all(label == i // 10 for i, label in items(sub))  # labels unchanged
    again = take_per_class(ds, 3, seed=0)
    other = take_per_class(ds, 3, seed=1)
    assert [i for i, _ in items(again)] == ids
    assert [i for i, _ in items(other)] != ids
    assert sub.info.class_names == NAMES


def test_take_per_class_keeps_all_of_a_small_class():
    ds = Toy([0, 0, 0, 0, 1, 2, 2, 2])
    sub = take_per_class(ds, 2, seed=0)
    assert torch.bincount(sub.targets).tolist() == [2, 1, 2]


def test_per_class_after_a_class_selection():
    ds = select_classes(Toy([c for c in range(5) for _ in range(4)]), exclude_classes=["cat"])
    sub = take_per_class(ds, 2, seed=3)
    assert sub.info.class_names == ["dog", "owl", "ant", "bee"]
    assert torch.bincount(sub.targets).tolist() == [2] * 4
    assert all(label == i // 4 - 1 for i, label in items(sub))


# ------------------------------------------------------------------------ through config


def digits_cfg(**data):
    return config_from_dict({"data": {"dataset": "digits", **data}})


def test_config_restricts_train_and_test_alike():
    cfg = digits_cfg(classes=["9", 3], exclude_classes=None)
    train, test = build_split(cfg, "train"), build_split(cfg, "test")
    full = build_split(digits_cfg(), "test")
    for ds in (train, test):
        assert ds.info.class_names == ["3", "9"] and ds.info.num_classes == 2
        assert sorted(set(ds.targets.tolist())) == [0, 1]
    assert len(test) == int((full.targets == 3).sum() + (full.targets == 9).sum())
    # label 0 is digit 3 and label 1 digit 9, image for image
    originals = torch.nonzero((full.targets == 3) | (full.targets == 9)).reshape(-1)
    for new, old in ((0, int(originals[0])), (len(test) - 1, int(originals[-1]))):
        image, label = test[new]
        assert torch.equal(image, full[old][0])
        assert ["3", "9"][label] == str(int(full.targets[old]))


def test_config_per_class_applies_to_the_training_split_only():
    cfg = replace(digits_cfg(per_class=7, exclude_classes=[0]), seed=5)
    data = build_train_data(cfg)
    assert data.info.class_names == [str(c) for c in range(1, 10)]
    assert torch.bincount(data.dataset.targets).tolist() == [7] * 9
    assert len(build_split(cfg, "test")) == 450 - 45  # the test split is not subsampled
    same = build_train_data(cfg).dataset
    assert torch.equal(same.indices, data.dataset.indices)  # seeded by cfg.seed
    other = build_train_data(replace(cfg, seed=6)).dataset
    assert not torch.equal(other.indices, data.dataset.indices)


def test_config_unknown_class_lists_the_valid_ones():
    with pytest.raises(ValueError) as info:
        build_split(digits_cfg(exclude_classes=["ten"]), "train")
    assert "data.exclude_classes" in str(info.value) and "0, 1, 2" in str(info.value)


@pytest.mark.parametrize(
    ("data", "message"),
    [({"classes": []}, "data.classes: give at least one class"),
     ({"classes": [1.5]}, "class names or integer indices"),
     ({"classes": [1, 2], "exclude_classes": [2]}, "both name ['2']"),
     ({"per_class": 0}, "data.per_class: must be >= 1")],
)
def test_config_validation(data, message):
    with pytest.raises(ConfigError) as info:
        digits_cfg(**data)
    assert any(message in p for p in info.value.problems), info.value.problems
