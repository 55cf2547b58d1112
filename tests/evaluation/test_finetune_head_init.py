"""Where fine-tuning's head starts (``finetune.head_init``): from the saved linear probe
(LP-FT), which before any step makes encoder + head give exactly the probe's predictions;
a probe is trained and written first when there is none; a probe for other classes is refused
with the fixes named; ``scratch`` keeps the random head of before."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from torch import nn

from clitools import assert_clean_error, run_cli
from clitools import read_json as read
from varcon.cli.main import main
from varcon.evaluation.finetune import (
    FinetuneModel,
    ProbeMismatch,
    initial_head,
    probe_mismatches,
)
from varcon.evaluation.linear import probe_accuracy, save_probe, train_probe_on_features
from varcon.runtime.config import LinearConfig, config_from_dict

TINY = ["optim.epochs=1", "optim.warmup_epochs=0", "optim.batch_size=64",
        "train.max_steps_per_epoch=4", "linear.run_after_pretrain=false",
        "train.progress=off", "train.tau2_every=0", "data.num_workers=0"]
# 40 training images per class: a few steps (the test split stays whole, 450 images)
FT = ["finetune.epochs=1", "finetune.batch_size=128", "linear.epochs=5", "data.per_class=40",
      "data.num_workers=0", "train.progress=off"]
NAMES = ["a", "b", "c", "d"]


# ----------------------------------------------------------------- generated data, no run
def _encoder(seed: int = 0) -> nn.Module:
    """A tiny conv-BN-ReLU-pool encoder ``[N, 3, 8, 8] -> [N, 8]`` whose BatchNorm running
    statistics are not the identity (so eval and train mode differ)."""
    torch.manual_seed(seed)
    enc = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten())
    enc.out_dim = 8  # type: ignore[assignment]
    with torch.no_grad():
        enc.train()
        for _ in range(3):
            enc(2.0 * torch.randn(32, 3, 8, 8) + 1.0)
    return enc.eval()


def _images(n_per_class: int = 25, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Images whose class shifts one channel's brightness: learnable, not trivial."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(len(NAMES)).repeat_interleave(n_per_class)
    images = torch.randn(len(labels), 3, 8, 8, generator=gen)
    images[:, 0] += 0.8 * labels[:, None, None].float()
    images[:, 1] -= 0.5 * (labels[:, None, None] % 2).float()
    return images, labels


def _session(out_dir: Path, encoder: nn.Module, head_init: str = "probe",
             class_names: list[str] | None = None, dataset: str = "shapes") -> Any:
    """What :func:`initial_head` reads of an :class:`EvalSession`."""
    names = list(class_names or NAMES)
    cfg = config_from_dict({"seed": 3, "finetune": {"head_init": head_init}})
    return SimpleNamespace(
        cfg=cfg, ctx=SimpleNamespace(is_main=True, distributed=False,
                                     device=torch.device("cpu")),
        net=SimpleNamespace(encoder=encoder, out_dim=encoder.out_dim),
        num_classes=len(names), class_names=names, out_dir=out_dir,
        checkpoint="/runs/x/checkpoints/last.pt",
        context=lambda features="encoder": {"eval_dataset": dataset})


def test_the_model_built_from_the_probe_gives_the_probe_predictions_before_any_step(
        tmp_path):
    encoder = _encoder()
    images, labels = _images()
    with torch.no_grad():
        feats = encoder(images)  # what `varcon linear` trains on: eval-mode encoder output
    lc = LinearConfig(epochs=30, batch_size=50, lr=0.5, augment="eval")
    probe = train_probe_on_features(feats, labels, len(NAMES), lc, seed=2)
    scores = probe_accuracy(probe, feats, labels, len(NAMES))
    assert 40 < scores["top1"] < 100  # chance: 25%; a probe with something to reproduce
    session = _session(tmp_path, encoder)
    save_probe(session, probe, results=scores)

    head, init = initial_head(session)
    model = FinetuneModel(encoder, head).eval()
    with torch.no_grad():
        logits, expected = model(images), probe(feats)
    torch.testing.assert_close(logits, expected)
    assert torch.equal(logits.argmax(1), expected.argmax(1))
    assert probe_accuracy(head, feats, labels, len(NAMES))["top1"] == scores["top1"]
    assert init == {"head_init": "probe", "probe": str(tmp_path / "linear_probe.pt"),
                    "probe_checkpoint": "/runs/x/checkpoints/last.pt",
                    "probe_top1": scores["top1"], "probe_trained_now": False}


def test_scratch_is_the_seeded_random_head_of_before(tmp_path):
    encoder = _encoder()
    session = _session(tmp_path, encoder, head_init="scratch")
    save_probe(session, nn.Linear(8, len(NAMES)))  # present, and not used
    head, init = initial_head(session)
    torch.manual_seed(3 + 2)  # what fine-tuning did before head_init existed
    before = nn.Linear(8, len(NAMES))
    assert torch.equal(head.weight, before.weight) and torch.equal(head.bias, before.bias)
    assert init == {"head_init": "scratch"}


def test_a_probe_for_other_classes_or_features_is_refused(tmp_path):
    encoder = _encoder()
    save_probe(_session(tmp_path, encoder, class_names=["a", "b", "c", "d", "e"]),
               nn.Linear(8, 5))
    with pytest.raises(ProbeMismatch) as info:
        initial_head(_session(tmp_path, encoder))
    message = str(info.value)
    for needle in ("linear_probe.pt", "it has 5 classes, the data 4", "varcon linear",
                   "--output-dir", "finetune.head_init=scratch"):
        assert needle in message, (needle, message)

    state = {"weight": torch.zeros(4, 6), "bias": torch.zeros(4), "num_classes": 4,
             "class_names": ["a", "c", "b", "d"], "features": "encoder",
             "eval_dataset": "other"}
    problems = probe_mismatches(state, in_dim=8, class_names=NAMES, eval_dataset="shapes")
    assert problems == ["it reads 6-d features, this encoder gives 8-d",
                        "its classes differ from the data's (class 1: 'c' vs 'b')",
                        "it was trained on 'other', this fine-tuning uses 'shapes'"]
    state.update(weight=torch.zeros(4, 8), class_names=NAMES, eval_dataset="shapes")
    assert probe_mismatches(state, in_dim=8, class_names=NAMES, eval_dataset="shapes") == []


def test_a_file_that_is_not_a_probe_is_refused_by_name(tmp_path):
    session = _session(tmp_path, _encoder())
    (tmp_path / "linear_probe.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ProbeMismatch, match=r"cannot start the head from .*linear_probe\.pt"):
        initial_head(session)
    torch.save({"weight": torch.zeros(4, 8)}, tmp_path / "linear_probe.pt")
    with pytest.raises(ProbeMismatch, match="not a linear probe saved by `varcon linear`"):
        initial_head(session)


# ------------------------------------------------------------------ the command, on a run
@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("finetune_head") / "run"
    assert main(["pretrain", "--output-dir", str(path), *TINY]) == 0
    return path


def test_without_a_probe_one_is_trained_first_then_reused(run, capsys, tmp_path):
    out = tmp_path / "eval"
    code, stdout, err = run_cli(capsys, "finetune", "--checkpoint", run, "--output-dir", out,
                                *FT)
    assert code == 0, err
    assert "no linear probe in" in stdout and "training it first" in stdout
    linear = read(out / "linear.json")  # written as `varcon linear` writes it
    assert linear["protocol"] == "linear" and linear["settings"]["epochs"] == 5
    assert (out / "linear_probe.pt").is_file() and (out / "linear_confusion.npy").is_file()
    record = read(out / "finetune.json")
    settings, results = record["settings"], record["results"]
    assert settings["head_init"] == "probe" and settings["probe_trained_now"] is True
    assert settings["probe"] == str(out / "linear_probe.pt")
    assert settings["probe_top1"] == linear["results"]["top1"]
    # before any step, encoder + head is the probe: the same test accuracy
    assert results["top1_at_start"] == linear["results"]["top1"]

    code, stdout, err = run_cli(capsys, "finetune", "--checkpoint", run, "--output-dir", out,
                                *FT)
    assert code == 0, err
    assert "training it first" not in stdout and "warning" not in stdout + err
    assert not list(out.glob("linear-*.json"))  # the probe was read, not trained again
    again = read(out / "finetune.json")
    assert again["settings"]["probe_trained_now"] is False
    assert again["settings"]["probe_top1"] == linear["results"]["top1"]
    assert again["results"]["top1_at_start"] == linear["results"]["top1"]


def test_a_mismatched_probe_stops_the_command_before_any_training(run, capsys, tmp_path):
    out = tmp_path / "eval"
    out.mkdir()
    fake = SimpleNamespace(out_dir=out, num_classes=5, class_names=list("01234"),
                           checkpoint=str(run / "checkpoints" / "last.pt"),
                           context=lambda features="encoder": {"eval_dataset": "digits"})
    save_probe(fake, nn.Linear(128, 5))  # type: ignore[arg-type]
    code, _, err = run_cli(capsys, "finetune", "--checkpoint", run, "--output-dir", out, *FT)
    assert code == 2
    assert_clean_error(err, "it has 5 classes, the data 10", "finetune.head_init=scratch")
    assert not (out / "finetune.json").exists() and not (out / "linear.json").exists()


def test_scratch_trains_no_probe(run, capsys, tmp_path):
    out = tmp_path / "eval"
    code, _, err = run_cli(capsys, "finetune", "--checkpoint", run, "--output-dir", out,
                           "finetune.head_init=scratch", *FT)
    assert code == 0, err
    assert not (out / "linear.json").exists() and not (out / "linear_probe.pt").exists()
    record = read(out / "finetune.json")
    assert record["settings"]["head_init"] == "scratch" and "probe" not in record["settings"]
    assert 0 <= record["results"]["top1_at_start"] <= 40  # a random head: near chance (10%)
