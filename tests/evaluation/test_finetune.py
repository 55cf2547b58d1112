"""Fine-tuning (``varcon finetune``): encoder + linear head trained end to end on digits; the
encoder's learning rate is the head's times ``finetune.encoder_lr_scale``; the result file has
the common envelope; bad settings are refused before any work; torchrun gives one result."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from clitools import assert_clean_error, run_cli
from clitools import read_json as read
from varcon.cli.main import main
from varcon.evaluation.finetune import FinetuneModel, finetune_param_groups
from varcon.runtime.config import ConfigError, FinetuneConfig, config_from_dict
from varcon.runtime.schedule import WarmupCosine

TINY = ["optim.epochs=1", "optim.warmup_epochs=0", "optim.batch_size=64",
        "train.max_steps_per_epoch=4", "linear.run_after_pretrain=false",
        "train.progress=off", "train.tau2_every=0", "data.num_workers=0"]
FT = ["finetune.epochs=3", "finetune.batch_size=64", "finetune.lr=0.2",
      "data.num_workers=0", "train.progress=off"]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("finetune") / "run"
    assert main(["pretrain", "--output-dir", str(path), *TINY]) == 0
    return path


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_finetune_trains_and_writes_its_result(run, capsys):
    ckpt = run / "checkpoints" / "last.pt"
    before = _digest(ckpt)
    code, out, err = run_cli(capsys, "finetune", "--checkpoint", run, *FT)
    assert code == 0, err
    assert "finetune (digits)" in out and "top1" in out and "history" not in out
    record = read(run / "eval" / "finetune.json")
    assert record["protocol"] == "finetune" and record["format_version"] == 1
    assert record["checkpoint"] == str(ckpt) and record["encoder"] == "small_cnn"
    assert record["features"] == "encoder" and len(record["class_names"]) == 10
    settings = record["settings"]
    assert settings["epochs"] == 3 and settings["lr"] == 0.2
    assert settings["encoder_lr_scale"] == 0.1 and settings["encoder_lr"] == pytest.approx(0.02)
    assert settings["augment"] == "eval"  # the digits config's: no mirrored digits
    assert settings["schedule"] == "cosine" and settings["head_init"] == "probe"
    results = record["results"]
    losses = results["history"]["train_loss"]
    assert len(losses) == 3 and losses[-1] < losses[0]  # it trains
    assert results["train_loss"] == losses[-1]
    assert results["n_test"] == 450 and results["top1"] > 60  # chance: 10%
    assert results["top1"] <= results["top5"] <= 100
    confusion = np.load(run / "eval" / "finetune_confusion.npy")
    assert confusion.shape == (10, 10) and confusion.sum() == 450
    assert np.trace(confusion) / 450 * 100 == pytest.approx(results["top1"])
    assert _digest(ckpt) == before  # the checkpoint is read, never changed


def test_encoder_learning_rate_is_scaled():
    encoder = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Flatten())
    model = FinetuneModel(encoder, nn.Linear(4, 3))
    fc = FinetuneConfig(lr=0.4, encoder_lr_scale=0.25, epochs=2)
    groups = finetune_param_groups(model, fc)
    assert [g["name"] for g in groups] == ["encoder", "head"]
    ids = [id(p) for g in groups for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in model.parameters())  # each exactly once
    optimizer = torch.optim.SGD(groups, lr=fc.lr, momentum=0.9)
    enc, head = optimizer.param_groups
    assert enc["lr"] == pytest.approx(0.1) and head["lr"] == pytest.approx(0.4)
    schedule = WarmupCosine(fc.lr, 10)
    for step in (0, 3, 7):  # the schedule keeps the ratio at every step
        schedule.apply(optimizer, step)
        assert enc["lr"] == pytest.approx(0.25 * head["lr"]) and head["lr"] == schedule(step)


@pytest.mark.parametrize(("override", "needle"), [
    ("finetune.epochs=0", "finetune.epochs: must be >= 1"),
    ("finetune.lr=-1", "finetune.lr: must be > 0"),
    ("finetune.encoder_lr_scale=0", "finetune.encoder_lr_scale: must be > 0"),
    ("finetune.augment=bogus", "finetune.augment: must be one of"),
    ("finetune.momentum=1", "finetune.momentum: must be in [0, 1)"),
    ("finetune.weight_decay=-0.1", "finetune.weight_decay: must be >= 0"),
    ("finetune.warmup_epochs=3", "set finetune.warmup_epochs=2"),
    ("finetune.batch_size=0", "finetune.batch_size: must be >= 1"),
])
def test_bad_settings_are_refused(override, needle):
    key, _, value = override.partition("=")
    section, name = key.split(".")
    data = {section: {name: value if name == "augment" else float(value)
                      if "." in value else int(value)}}
    if name == "warmup_epochs":
        data[section]["epochs"] = 3
    with pytest.raises(ConfigError) as info:
        config_from_dict(data)
    assert needle in str(info.value)


def test_bad_settings_from_the_cli_write_nothing(run, capsys, tmp_path):
    out_dir = tmp_path / "out"
    code, _, err = run_cli(capsys, "finetune", "--checkpoint", run, "--output-dir", out_dir,
                           "finetune.encoder_lr_scale=-1", "finetune.epochs=0")
    assert code == 2
    assert_clean_error(err, "finetune.encoder_lr_scale", "finetune.epochs")
    assert not out_dir.exists()


@pytest.mark.slow
def test_finetune_under_torchrun(run, tmp_path):
    out = tmp_path / "two"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "varcon", "finetune", "--checkpoint", str(run), "--output-dir", str(out), *FT],
        capture_output=True, text=True, timeout=300, env=env,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert proc.stdout.count("finetune (digits)") == 1  # rank 0 prints, rank 1 does not
    record = read(out / "finetune.json")
    assert record["settings"]["world_size"] == 2
    results = record["results"]
    assert results["n_test"] == 450 and results["top1"] > 60
    losses = results["history"]["train_loss"]
    assert losses[-1] < losses[0]
