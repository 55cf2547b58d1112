"""``varcon export`` and ``varcon embed`` end to end on a tiny trained digits run and a tiny
generated ImageFolder: they write what they print, and every bad input gets one clean
``error:`` line, exit status 2, and leaves earlier files untouched.

One tiny digits run is pre-trained for the module (one epoch of two steps, no evaluation).
"""

from __future__ import annotations

import builtins
import json
import shutil
from pathlib import Path

import pytest
import torch

from clitools import assert_clean_error, run_cli
from datagen import write_image_folder
from varcon.cli.main import main
from varcon.evaluation.embed import read_embeddings
from varcon.runtime.checkpoint import load_encoder

RUN_ARGS = ["optim.epochs=1", "optim.warmup_epochs=0", "optim.batch_size=64",
            "train.max_steps_per_epoch=2", "train.progress=off", "train.tau2_every=0",
            "linear.run_after_pretrain=false"]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("cli_export") / "run"
    assert main(["pretrain", "--output-dir", str(run), *RUN_ARGS]) == 0
    return run


@pytest.fixture(scope="module")
def val(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = write_image_folder(tmp_path_factory.mktemp("cli_tree") / "shapes", size=(8, 8),
                              mode="L")
    return root / "val"


def test_export_then_embed_a_folder(run, val, tmp_path, capsys):
    exp = tmp_path / "exp"
    code, out, err = run_cli(capsys, "export", "--checkpoint", run, "--output", exp, "--head")
    assert code == 0, err
    assert "small_cnn (out_dim 128)" in out and f"written to    {exp}" in out
    assert sorted(p.name for p in exp.iterdir()) == ["README.md", "encoder.safetensors",
                                                     "head.safetensors", "varcon_encoder.json"]
    x = torch.randn(3, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(load_encoder(exp)(x), load_encoder(run)(x))

    emb = tmp_path / "val.parquet"
    code, out, err = run_cli(capsys, "embed", "--checkpoint", exp, "--input", val,
                             "--output", emb, "train.progress=off")
    assert code == 0, err
    assert "images      12" in out and "labels      3 classes" in out
    assert "skipped     0" in out and str(emb) in out
    got = read_embeddings(emb)
    assert got["embeddings"].shape == (12, 128) and got["class_names"] == ["a", "b", "c"]
    assert got["paths"] == sorted(str(p) for p in val.resolve().glob("*/*.png"))


def test_embed_a_dataset_split_with_head_features(run, tmp_path, capsys):
    out_file = tmp_path / "digits.npz"
    code, out, err = run_cli(capsys, "embed", "--checkpoint", run, "--input", "digits:test",
                             "--output", out_file, "--features", "head", "train.progress=off")
    assert code == 0, err
    assert "embed (digits test)" in out and "images      450" in out
    got = read_embeddings(out_file)
    assert got["embeddings"].shape == (450, 128) and got["meta"]["features"] == "head"


def test_existing_output_needs_overwrite(run, val, tmp_path, capsys):
    out_file = tmp_path / "e.npz"
    out_file.write_bytes(b"earlier")
    code, _, err = run_cli(capsys, "embed", "--checkpoint", run, "--input", val, "--output",
                           out_file)
    assert code == 2
    assert_clean_error(err, str(out_file), "--overwrite")
    assert out_file.read_bytes() == b"earlier"
    code, _, err = run_cli(capsys, "embed", "--checkpoint", run, "--input", val, "--output",
                           out_file, "--overwrite", "train.progress=off")
    assert code == 0, err
    assert read_embeddings(out_file)["embeddings"].shape == (12, 128)

    exp = tmp_path / "exp"
    assert run_cli(capsys, "export", "--checkpoint", run, "--output", exp)[0] == 0
    code, _, err = run_cli(capsys, "export", "--checkpoint", run, "--output", exp, "--head")
    assert code == 2
    assert_clean_error(err, str(exp), "--overwrite")
    assert not (exp / "head.safetensors").exists()
    code, _, err = run_cli(capsys, "export", "--checkpoint", run, "--output", exp, "--head",
                           "--overwrite")
    assert code == 0, err
    assert (exp / "head.safetensors").is_file()


def test_unreadable_image_stops_or_is_skipped(run, val, tmp_path, capsys):
    folder = tmp_path / "broken"
    shutil.copytree(val, folder)
    bad = folder / "c" / "bad.png"
    bad.write_bytes(b"not an image")
    out_file = tmp_path / "e.npz"
    code, _, err = run_cli(capsys, "embed", "--checkpoint", run, "--input", folder,
                           "--output", out_file, "train.progress=off")
    assert code == 2
    assert_clean_error(err, str(bad.resolve()), "data.bad_files=skip")
    assert not out_file.exists()
    with pytest.warns(UserWarning, match="skipped 1"):
        code, out, err = run_cli(capsys, "embed", "--checkpoint", run, "--input", folder,
                                 "--output", out_file, "data.bad_files=skip",
                                 "train.progress=off")
    assert code == 0, err
    assert "skipped     1" in out and "images      12" in out
    assert read_embeddings(out_file)["skipped"] == [str(bad.resolve())]


def test_bad_exports_and_arguments_get_clean_errors(run, val, tmp_path, capsys, monkeypatch):
    exp = tmp_path / "exp"
    assert run_cli(capsys, "export", "--checkpoint", run, "--output", exp)[0] == 0

    code, _, err = run_cli(capsys, "export", "--checkpoint", tmp_path / "none", "--output",
                           tmp_path / "y")
    assert code == 2
    assert_clean_error(err, "checkpoint not found", "varcon export")

    code, _, err = run_cli(capsys, "export", "--checkpoint", run, "--output", tmp_path / "tv",
                           "--format", "torchvision")
    assert code == 2
    assert_clean_error(err, "'small_cnn' has no torchvision counterpart")
    assert not (tmp_path / "tv").exists()

    code, _, err = run_cli(capsys, "embed", "--checkpoint", run, "--input", val, "--output",
                           tmp_path / "e.csv")
    assert code == 2
    assert_clean_error(err, "unknown output extension '.csv'", ".npz", ".parquet")

    newer = tmp_path / "newer"
    shutil.copytree(exp, newer)
    meta = json.loads((newer / "varcon_encoder.json").read_text())
    meta["format_version"] = 99
    (newer / "varcon_encoder.json").write_text(json.dumps(meta))
    code, _, err = run_cli(capsys, "embed", "--checkpoint", newer, "--input", val, "--output",
                           tmp_path / "e.npz")
    assert code == 2
    assert_clean_error(err, "format version 99", "upgrade varcon")

    (newer / "varcon_encoder.json").unlink()
    code, _, err = run_cli(capsys, "export", "--checkpoint", newer, "--output", tmp_path / "x")
    assert code == 2
    assert_clean_error(err, "no varcon_encoder.json")

    real_import = builtins.__import__

    def no_pyarrow(name, *args, **kwargs):
        if name.startswith("pyarrow"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pyarrow)
    code, _, err = run_cli(capsys, "embed", "--checkpoint", exp, "--input", val, "--output",
                           tmp_path / "e.parquet")
    assert code == 2
    assert_clean_error(err, 'pip install "varcon[parquet]"')
    assert not list(tmp_path.glob("e.*"))
