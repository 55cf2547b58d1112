"""The dataset registry: the built-in datasets as entries, build_dataset dispatching on it,
and datasets added with register_dataset."""

from __future__ import annotations

import pytest
import torch

from varcon.data import (
    CIFAR10_MEAN,
    DIGITS_MEAN,
    DIGITS_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    DatasetInfo,
    DatasetSpec,
    TensorImageDataset,
    build_dataset,
    dataset_names,
    get_dataset,
    register_dataset,
)
from varcon.data.registry import DATASETS


def test_builtin_datasets():
    assert dataset_names()[:4] == ("digits", "cifar10", "cifar100", "imagefolder")
    digits, cifar10, imagefolder = (get_dataset(n) for n in ("digits", "cifar10",
                                                              "imagefolder"))
    assert (digits.channels, digits.needs_root, digits.mean, digits.std) == (
        1, False, DIGITS_MEAN, DIGITS_STD)
    assert (cifar10.channels, cifar10.needs_root, cifar10.mean) == (3, True, CIFAR10_MEAN)
    assert get_dataset("cifar100").needs_root
    assert (imagefolder.channels, imagefolder.needs_root) == (None, True)
    assert (imagefolder.mean, imagefolder.std) == (IMAGENET_MEAN, IMAGENET_STD)
    assert all(get_dataset(n).description for n in dataset_names()[:4])


def test_unknown_name_lists_the_registered():
    with pytest.raises(ValueError, match=r"unknown dataset 'cifar' \(did you mean cifar10"):
        get_dataset("cifar")
    with pytest.raises(ValueError, match="choose one of digits, cifar10, cifar100, imagefolder"):
        build_dataset("mnist", None, "train")


@pytest.fixture
def toy():
    calls: list[tuple[object, str, dict[str, object]]] = []

    def load(root: object, split: str, **options: object) -> TensorImageDataset:
        calls.append((root, split, options))
        info = DatasetInfo("toy_reg", 2, ["a", "b"], 1, 4, (0.5,), (0.25,))
        return TensorImageDataset(torch.zeros(6, 1, 4, 4, dtype=torch.uint8), [0, 1] * 3, info)

    spec = register_dataset(DatasetSpec("toy_reg", load, 1, (0.5,), (0.25,)))
    yield spec, calls
    DATASETS.unregister("toy_reg")


def test_build_dataset_calls_a_registered_loader(toy):
    spec, calls = toy
    assert get_dataset("toy_reg") is spec and "toy_reg" in dataset_names()
    ds = build_dataset("toy_reg", "/somewhere", "test", image_size=8, cache="none")
    assert len(ds) == 6 and ds.info.name == "toy_reg"
    ((root, split, options),) = calls
    assert (root, split) == ("/somewhere", "test")
    assert options == {"download": False, "image_size": 8, "cache": "none", "cache_dir": None,
                       "bad_files": "error", "stats": "default", "channels": None}
    with pytest.raises(ValueError, match=r"toy_reg images have 1 channel\(s\); channels=3"):
        build_dataset("toy_reg", None, "train", channels=3)


def test_registering_twice(toy):
    spec, _ = toy
    assert register_dataset(spec) is spec  # the same entry again: a no-op
    other = DatasetSpec("toy_reg", spec.load, 3, (0.5,), (0.5,))
    with pytest.raises(ValueError, match="already registered"):
        register_dataset(other)
    assert register_dataset(other, overwrite=True) is other
    with pytest.raises(TypeError, match="DatasetSpec"):
        register_dataset("toy_reg")  # type: ignore[arg-type]


def test_a_loader_must_return_info_and_targets():
    register_dataset(DatasetSpec("bare", lambda root, split, **o: [(torch.zeros(1), 0)], 1,
                                 (0.5,), (0.5,)))
    try:
        with pytest.raises(TypeError, match=r"without \.info or \.targets"):
            build_dataset("bare", None, "train")
    finally:
        DATASETS.unregister("bare")


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"load": "not callable"}, "load must be callable"),
    ({"channels": 2}, "channels must be 1, 3 or None"),
    ({"mean": (0.5, 0.5), "std": (0.5,)}, "one number per channel"),
    ({"channels": 1, "mean": (0.5,) * 3, "std": (0.5,) * 3}, "one number per channel"),
    ({"std": (0.0,)}, "std must be > 0"),
])
def test_spec_is_checked(kwargs, match):
    args = {"name": "bad", "load": lambda root, split, **o: None, "channels": 1,
            "mean": (0.5,), "std": (0.5,), **kwargs}
    with pytest.raises((TypeError, ValueError), match=match):
        DatasetSpec(**args)
