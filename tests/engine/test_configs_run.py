"""One end-to-end ``varcon pretrain`` per on-disk format (the built-in digits, CIFAR python
pickles, an ImageFolder tree of JPEGs), each from a shipped config of another method, with
tiny overrides: the run trains, saves a checkpoint that loads, and evaluates. Every shipped
config is checked without training in tests/runtime/test_shipped_configs.py."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import torch

import varcon
from clitools import read_json, run_cli
from datagen import write_cifar_python, write_image_folder
from varcon.data import build_dataset
from varcon.runtime.config import read_yaml

pytestmark = pytest.mark.slow

TINY = [
    "data.num_workers=0", "optim.epochs=1", "optim.warmup_epochs=0", "optim.batch_size=16",
    "train.max_steps_per_epoch=2", "train.progress=off", "train.save_every=0",
    "linear.epochs=1", "linear.batch_size=16", "knn.k=3",
    "model.encoder=small_cnn", "model.kwargs={widths: [8, 16]}",
]
# format: (shipped config, method, data.dataset, its name in the results (an ImageFolder
# tree's is its folder's), classes, channels, image size)
RUNS = {
    "digits": ("digits", "varcon", "digits", "digits", 10, 1, 8),
    "cifar-pickles": ("supcon_cifar10", "supcon", "cifar10", "cifar10", 10, 3, 32),
    "imagefolder-jpeg": ("ce_imagenet100", "ce", "imagefolder", "imagenet100", 3, 3, 224),
}


def _write_data(fmt: str, root: Path) -> Path | None:
    if fmt == "cifar-pickles":
        write_cifar_python(root, "cifar10", n_train=40, n_test=20)
        return root
    if fmt == "imagefolder-jpeg":
        return write_image_folder(root, classes=("n01", "n02", "n03"), per_class=11,
                                  size=[(40, 32), (30, 44)], fmt="jpeg")
    return None  # digits ship with scikit-learn


@pytest.mark.parametrize("fmt", list(RUNS))
def test_shipped_config_trains_and_evaluates_end_to_end(fmt, tmp_path, capsys):
    config, method, dataset, name, classes, channels, size = RUNS[fmt]
    root = _write_data(fmt, tmp_path / name)
    run = tmp_path / "run"
    overrides = [*TINY, *([f"data.root={root}"] if root else [])]
    code, out, _ = run_cli(capsys, "pretrain", "--config", config, "--output-dir", run,
                           *overrides)
    assert code == 0

    # the run's config is the shipped one with the overrides
    saved = read_yaml(run / "config.yaml")
    assert (saved["method"], saved["data"]["dataset"]) == (method, dataset)
    assert saved["optim"]["epochs"] == 1 and saved["model"]["kwargs"] == {"widths": [8, 16]}
    assert saved["data"]["root"] == (str(root) if root else None)

    # one epoch of 2 steps, none skipped, a finite positive loss
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 1
    record = records[0]
    assert (record["epoch"], record["steps"], record["skipped_steps"]) == (1, 2, 0)
    assert math.isfinite(record["loss"]) and record["loss"] > 0
    if method == "varcon":
        assert math.isfinite(record["kl"]) and math.isfinite(record["nll"])
        assert record["loss"] == pytest.approx(record["kl"] + record["nll"], rel=1e-4)

    # the checkpoint loads: its encoder embeds the test images with the training preprocessing
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert state["epoch"] == 1
    encoder = varcon.load_encoder(run)
    assert not encoder.training
    weights = {k.removeprefix("encoder."): v for k, v in state["model"].items()
               if k.startswith("encoder.")}
    assert weights and all(torch.equal(v, weights[k]) for k, v in encoder.state_dict().items())
    test_set = build_dataset(dataset, root, "test", cache="none")  # files of mixed sizes
    images = torch.stack([encoder.transform(test_set[i][0]) for i in range(3)])
    assert images.shape == (3, channels, size, size)
    with torch.no_grad():
        features = encoder(images)
    assert features.shape == (3, 16) and torch.isfinite(features).all()

    # evaluation results, as written and as printed
    linear = read_json(run / "eval" / "linear.json")
    assert (linear["protocol"], linear["method"], linear["dataset"]) == ("linear", method, name)
    assert linear["settings"]["epochs"] == 1 and len(linear["class_names"]) == classes
    assert 0 <= linear["results"]["top1"] <= linear["results"]["top5"] <= 100
    assert re.search(rf"linear_top1 +{linear['results']['top1']:.2f}\n", out), out
    knn = read_json(run / "eval" / "knn.json")
    assert 0 <= knn["results"]["top1"]["3"] <= 100
    cluster = read_json(run / "eval" / "cluster.json")
    assert cluster["results"]["n_samples"] == len(test_set)
    assert cluster["results"]["num_clusters"] == len(set(test_set.targets.tolist()))
