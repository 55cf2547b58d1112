"""The example ``docs/examples/toy_dataset.py`` runs as published: its dataset, registered
from outside the package, is then a valid ``data.dataset`` for configs, ``build_dataset``
and the training data pipeline."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest
import torch

from varcon.data import build_dataset, compute_mean_std, dataset_names, get_dataset
from varcon.data.registry import DATASETS
from varcon.runtime.config import ConfigError, config_to_dict, load_config
from varcon.runtime.data import build_train_data

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "toy_dataset.py"


@pytest.fixture
def example():
    """The example's namespace, run as a script would run (``main`` not called yet)."""
    assert "toy_shapes" not in dataset_names()
    namespace = runpy.run_path(str(EXAMPLE), run_name="toy_dataset_example")
    yield namespace
    DATASETS.unregister("toy_shapes")


def test_main_runs_and_prints(example, capsys):
    example["main"]()
    out = capsys.readouterr().out
    assert "did you mean toy_shapes?" in out
    assert "toy_shapes: 300 training and 150 test images of 3x16x16" in out
    assert "square, disc, cross" in out


def test_the_dataset_is_usable_through_the_config(example):
    spec = get_dataset("toy_shapes")
    assert spec is example["TOY_SHAPES"] and spec.channels == 3 and not spec.needs_root
    cfg = load_config(None, ["data.dataset=toy_shapes", "optim.batch_size=60",
                             "data.sampler=class_balanced", "data.samples_per_class=20"])
    assert config_to_dict(cfg)["data"]["dataset"] == "toy_shapes"
    with pytest.raises(ConfigError, match="toy_shapes images have 3 channel"):
        load_config(None, ["data.dataset=toy_shapes", "data.channels=1"])

    train = build_dataset("toy_shapes", None, "train")
    image, label = train[0]
    assert image.dtype == torch.uint8 and tuple(image.shape) == (3, 16, 16)
    assert train.targets.bincount().tolist() == [100, 100, 100] and label == 0
    assert len(build_dataset("toy_shapes", None, "test")) == 150
    # the spec's default statistics are the training split's own
    mean, std = compute_mean_std(train)
    assert mean == pytest.approx(spec.mean, abs=2e-3)
    assert std == pytest.approx(spec.std, abs=2e-3)
    # deterministic: the same images every time
    assert torch.equal(build_dataset("toy_shapes", None, "train").images, train.images)

    data = build_train_data(cfg)  # what pre-training builds from the config
    assert data.info.num_classes == 3 and data.image_size == 16 and data.mean == spec.mean
    view = data.train_transform(image)
    assert view.shape == (3, 16, 16) and view.dtype == torch.float32


def test_running_the_file_as_a_script(capsys):
    try:
        runpy.run_path(str(EXAMPLE), run_name="__main__")
    finally:
        DATASETS.unregister("toy_shapes")
    assert "an augmented view of a square" in capsys.readouterr().out
