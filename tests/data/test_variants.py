"""Many-class datasets from few-class ones (data.rotations x data.channel_orders): labels,
balance, the pixels of each variant, and the config checks."""

from __future__ import annotations

import itertools

import pytest
import torch

from datagen import write_cifar_python
from varcon.data.datasets import DatasetInfo, TensorImageDataset
from varcon.data.variants import RotatedChannelOrderDataset, add_variants
from varcon.runtime.config import ConfigError, config_from_dict
from varcon.runtime.data import build_split, build_train_data


def rgb_dataset(per_class: int = 48, classes: int = 2, size: int = 4) -> TensorImageDataset:
    """Distinct random RGB images, ``per_class`` of each class."""
    gen = torch.Generator().manual_seed(0)
    n = per_class * classes
    images = torch.randint(0, 256, (n, 3, size, size), generator=gen, dtype=torch.uint8)
    labels = torch.arange(n) % classes
    info = DatasetInfo("toy", classes, [f"c{i}" for i in range(classes)], 3, size,
                       (0.5,) * 3, (0.5,) * 3)
    return TensorImageDataset(images, labels, info)


def test_labels_follow_class_rotation_and_order_and_are_balanced():
    base = rgb_dataset()
    ds = RotatedChannelOrderDataset(base, rotations=4, channel_orders=6)
    assert ds.info.num_classes == 2 * 24 and len(ds.info.class_names) == 48
    assert ds.info.class_names[0] == "c0/rot0/RGB"
    assert ds.info.class_names[24 * 1 + 6 * 2 + 5] == "c1/rot180/BGR"
    assert torch.equal(ds.targets // 24, base.targets)  # the original class is kept
    assert torch.bincount(ds.targets, minlength=48).tolist() == [2] * 48  # 48 images / 24
    for i in range(len(ds)):
        _, label = ds[i]
        assert label == int(ds.targets[i]) == int(base.targets[i]) * 24 + int(ds.variant[i])


def test_each_variant_is_the_rotated_channel_permuted_image():
    base = rgb_dataset(per_class=24, classes=1)
    ds = RotatedChannelOrderDataset(base, rotations=4, channel_orders=6)
    orders = list(itertools.permutations(range(3)))
    seen = set()
    for i in range(len(ds)):
        image, label = ds[i]
        r, p = divmod(label % 24, 6)
        expected = torch.rot90(base.images[i], r, dims=(1, 2))[list(orders[p])]
        assert torch.equal(image, expected)
        assert image.dtype == torch.uint8 and image.is_contiguous()
        seen.add((r, p))
    assert len(seen) == 24  # every variant occurs


def test_two_rotations_are_half_turns_and_assignment_is_seeded():
    base = rgb_dataset(per_class=40, classes=1)
    ds = RotatedChannelOrderDataset(base, rotations=2, channel_orders=1)
    for i in range(len(ds)):
        image, label = ds[i]
        assert torch.equal(image, torch.rot90(base.images[i], 2 * label, dims=(1, 2)))
    again = RotatedChannelOrderDataset(base, rotations=2, channel_orders=1)
    other = RotatedChannelOrderDataset(base, rotations=2, channel_orders=1, seed=1)
    assert torch.equal(ds.targets, again.targets)
    assert not torch.equal(ds.targets, other.targets)


def test_identity_and_bad_values():
    base = rgb_dataset()
    assert add_variants(base) is base
    with pytest.raises(ValueError, match=r"data.rotations must be one of \(1, 2, 4\)"):
        add_variants(base, rotations=3)
    with pytest.raises(ValueError, match=r"data\.channel_orders must be an integer in 1\.\.6"):
        add_variants(base, channel_orders=7)
    gray = TensorImageDataset(torch.zeros(4, 1, 2, 2, dtype=torch.uint8), torch.zeros(4),
                              DatasetInfo("g", 1, ["a"], 1, 2, (0.5,), (0.5,)))
    with pytest.raises(ValueError, match=r"needs RGB images.*data\.channel_orders=1"):
        add_variants(gray, channel_orders=2)
    assert len(add_variants(gray, rotations=4).info.class_names) == 4  # rotations need no RGB


def test_config_keys_apply_to_every_split(tmp_path):
    write_cifar_python(tmp_path, "cifar10", n_train=200, n_test=100)
    cfg = config_from_dict({
        "data": {"dataset": "cifar10", "root": str(tmp_path), "rotations": 4,
                 "channel_orders": 2, "augment_params": {"grayscale_p": 0, "hflip_p": 0},
                 "per_class": 16},
        "linear": {"augment": "eval"},
    })
    data = build_train_data(cfg)
    assert data.info.num_classes == 80
    assert len(data.dataset) == 10 * 16  # per_class counts the original classes' images
    test = build_split(cfg, "test")
    assert test.info.class_names == data.info.class_names
    assert int(test.targets.max()) < 80


def test_config_refuses_grayscale_with_channel_orders_and_bad_values():
    with pytest.raises(ConfigError, match="grayscale_p=0"):
        config_from_dict({"data": {"channel_orders": 6}})
    with pytest.raises(ConfigError, match=r"data\.rotations must be one of"):
        config_from_dict({"data": {"rotations": 90}})
    # a horizontal flip maps a 90-degree turn of an image to a 270-degree turn of its mirror
    with pytest.raises(ConfigError, match=r"hflip_p=0.*\n.*linear\.augment=eval"):
        config_from_dict({"data": {"rotations": 4}})
    cfg = config_from_dict({"data": {"rotations": 4, "augment_params": {"hflip_p": 0}},
                            "linear": {"augment": "eval"}})  # digits are grey: rotations only
    assert cfg.data.rotations == 4 and cfg.data.channel_orders == 1
    assert config_from_dict({"data": {"rotations": 2}}).data.rotations == 2  # 0/180: flips ok
