"""The command line: parse, call, print."""

import json
import subprocess
import sys

import pytest

from varcon.cli.main import main

TINY = ["optim.epochs=2", "optim.warmup_epochs=1", "optim.batch_size=64",
        "train.max_steps_per_epoch=3", "linear.epochs=2", "knn.k=5", "train.progress=off"]


def test_pretrain_then_linear(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["pretrain", "--output-dir", str(run), *TINY]) == 0
    out = capsys.readouterr().out
    assert "results" in out and "linear_top1" in out and "knn_top1@5" in out
    assert "kmeans_nmi" in out and "ward_ari" in out  # clustering joins the results table
    first = json.loads((run / "eval" / "linear.json").read_text())

    ckpt = run / "checkpoints" / "last.pt"
    assert main(["linear", "--checkpoint", str(ckpt), "linear.epochs=3"]) == 0
    out = capsys.readouterr().out
    assert "top1" in out and str(run / "eval") in out
    second = json.loads((run / "eval" / "linear.json").read_text())
    assert second["settings"]["epochs"] == 3 and first["settings"]["epochs"] == 2
    # the earlier result is kept, not overwritten
    kept = [p for p in (run / "eval").glob("linear-*.json")]
    assert len(kept) == 1 and json.loads(kept[0].read_text()) == first

    other = tmp_path / "elsewhere"
    assert main(["linear", "--checkpoint", str(run), "--output-dir", str(other),
                 "linear.epochs=1"]) == 0
    assert json.loads((other / "linear.json").read_text())["settings"]["epochs"] == 1


def test_unknown_override_is_reported(tmp_path, capsys):
    assert main(["pretrain", "--output-dir", str(tmp_path / "r"), "optim.lrate=1"]) == 2
    err = capsys.readouterr().err
    assert "unknown key 'optim.lrate'" in err and "optim.lr" in err
    assert not (tmp_path / "r").exists()


def test_configs_lists_shipped(capsys):
    assert main(["configs"]) == 0
    out = capsys.readouterr().out
    for name in ("digits", "cifar10", "imagenet1k", "supcon_cifar100", "ce_imagenet100"):
        assert name in out


def test_python_dash_m_entry_point():
    proc = subprocess.run([sys.executable, "-m", "varcon", "pretrain", "--help"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "--resume" in proc.stdout and "key=value" in proc.stdout


@pytest.mark.slow
def test_quickstart_reaches_98_percent(tmp_path, capsys):
    """The README's main job: the built-in digits config, unchanged, reaches >= 98% linear
    top-1 on the digits test split."""
    run = tmp_path / "quickstart"
    assert main(["pretrain", "--output-dir", str(run), "train.progress=off"]) == 0
    linear = json.loads((run / "eval" / "linear.json").read_text())
    assert linear["dataset"] == "digits" and linear["results"]["top1"] >= 98.0, linear
