import pytest

from datagen import write_image_folder
from varcon.data import IMAGENET_MEAN, compute_mean_std
from varcon.runtime.config import config_from_dict
from varcon.runtime.data import build_split, build_train_data


def _cfg(root, **data):
    return config_from_dict({"data": {"dataset": "imagefolder", "root": str(root),
                                      "cache_dir": str(root / "cache"), **data}})


def test_normalisation_from_config_or_computed(tmp_path):
    write_image_folder(tmp_path, classes=("a", "b"), per_class=3, size=(12, 12), fmt="png")
    default = build_train_data(_cfg(tmp_path))
    assert default.mean == pytest.approx(IMAGENET_MEAN)
    given = build_train_data(_cfg(tmp_path, mean=[0.5], std=[0.25]))
    assert given.mean == (0.5, 0.5, 0.5) and given.std == (0.25, 0.25, 0.25)
    computed = build_train_data(_cfg(tmp_path, stats="compute"))
    mean, _ = compute_mean_std(computed.dataset)
    assert computed.mean == pytest.approx(tuple(mean), abs=1e-4)
    assert computed.mean != pytest.approx(IMAGENET_MEAN, abs=1e-3)
    # the test split is read with the training split's statistics: it computes none itself
    test = build_split(_cfg(tmp_path, stats="compute"), "test")
    assert test.info.mean == pytest.approx(IMAGENET_MEAN)
    assert computed.image_size == 12 and computed.info.num_classes == 2
