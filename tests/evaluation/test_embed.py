"""Embedding a folder or a dataset (``varcon.evaluation.embed``): the embeddings equal the
encoder's features of the evaluation-preprocessed images (and the evaluation commands'
features), labels come from class folders or the dataset, paths are kept, ``.npz`` and
Parquet hold the same; unreadable files stop or are skipped as ``data.bad_files`` says; bad
arguments are refused before any work and an existing file is only replaced with
``overwrite``, atomically.

Checkpoints are written without training (``ckpttools.write_checkpoint``).
"""

from __future__ import annotations

import builtins
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ckpttools import write_checkpoint
from datagen import write_image_folder
from varcon.data import build_dataset, decode_image_file
from varcon.evaluation.embed import ParquetNotInstalledError, embed_images, read_embeddings
from varcon.evaluation.session import EvalSession
from varcon.export import export_encoder
from varcon.runtime.checkpoint import load_encoder, load_network
from varcon.runtime.distributed import DistContext

QUIET = ["train.progress=off"]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A digits small-CNN run directory (1 channel, 8x8)."""
    run = tmp_path_factory.mktemp("embed") / "run"
    write_checkpoint(run)
    return run


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An ImageFolder root: train/ and val/ with classes a, b, c of 4 RGB 10x12 images."""
    return write_image_folder(tmp_path_factory.mktemp("tree") / "shapes", size=(10, 12))


def direct_features(encoder, files: list[str]) -> torch.Tensor:
    x = torch.stack([encoder.transform(decode_image_file(f)) for f in files])
    with torch.no_grad():
        return encoder(x)


def test_embed_dataset_split_matches_the_evaluation_features(ckpt, tmp_path):
    out = tmp_path / "digits.npz"
    result = embed_images(ckpt, "digits:test", out, overrides=QUIET)
    got = read_embeddings(out)
    test = build_dataset("digits", None, "test")
    assert result["n"] == len(test) == 450 and result["dim"] == 128
    assert got["embeddings"].dtype == np.float32 and got["embeddings"].shape == (450, 128)
    assert got["labels"].tolist() == test.targets.tolist()
    assert got["class_names"] == [str(d) for d in range(10)]
    assert got["index"].tolist() == list(range(450)) and got["paths"] is None
    assert got["skipped"] == []
    # The evaluation commands' features of the same split (EvalTransform, same batches).
    ctx = DistContext(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    session = EvalSession.from_checkpoint(ckpt, QUIET, tmp_path / "eval", ctx)
    feats, labels = session.features("test", progress=False)
    assert torch.equal(torch.from_numpy(got["embeddings"]), feats)
    assert got["labels"].tolist() == labels.tolist()
    meta = got["meta"]
    assert meta["format"] == "varcon-embeddings" and meta["features"] == "encoder"
    assert (meta["dataset"], meta["split"], meta["n"], meta["dim"]) == ("digits", "test", 450,
                                                                         128)


def test_head_features_and_the_checkpoints_own_dataset(ckpt, tmp_path):
    out = tmp_path / "head.npz"
    embed_images(ckpt, "dataset:train", out, features="head", overrides=QUIET)
    got = read_embeddings(out)
    net, _ = load_network(ckpt)
    train = build_dataset("digits", None, "train")
    encoder = load_encoder(ckpt)
    with torch.no_grad():
        x = torch.stack([encoder.transform(train[i][0]) for i in range(20)])
        torch.testing.assert_close(torch.from_numpy(got["embeddings"][:20]), net(x))
    assert got["embeddings"].shape == (len(train), 128)
    np.testing.assert_allclose(np.linalg.norm(got["embeddings"], axis=1), 1.0, atol=1e-5)


def test_folder_with_class_subfolders_npz_and_parquet(ckpt, tree, tmp_path):
    """An RGB folder embedded by a 1-channel encoder: images become grey, as
    ``encoder.transform`` does; paths and labels follow the sorted class folders."""
    val = tree / "val"
    results = {}
    for suffix in (".npz", ".parquet"):
        out = tmp_path / f"val{suffix}"
        embed_images(ckpt, val, out, overrides=[*QUIET, "eval.batch_size=5"])
        results[suffix] = read_embeddings(out)
    npz, pq = results[".npz"], results[".parquet"]
    files = sorted(str(p) for p in val.resolve().glob("*/*.png"))
    assert npz["paths"] == files and pq["paths"] == files
    assert npz["labels"].tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert npz["class_names"] == ["a", "b", "c"] == pq["class_names"]
    expected = direct_features(load_encoder(ckpt), files).numpy()
    np.testing.assert_allclose(npz["embeddings"], expected, rtol=1e-5, atol=1e-6)
    assert np.array_equal(npz["embeddings"], pq["embeddings"])
    assert np.array_equal(npz["labels"], pq["labels"])
    assert npz["meta"]["input_kind"] == "folder" and npz["meta"]["class_names"] == ["a", "b",
                                                                                      "c"]
    import pyarrow.parquet as papq

    table = papq.read_table(tmp_path / "val.parquet")
    assert table.column_names == ["index", "path", "label", "class_name", "embedding"]
    assert table.column("class_name").to_pylist()[:5] == ["a"] * 4 + ["b"]
    assert json.loads(table.schema.metadata[b"varcon"])["dim"] == 128


def test_flat_folder_has_no_labels(ckpt, tree, tmp_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    for p in sorted((tree / "val").glob("*/*.png"))[:5]:
        shutil.copy(p, flat / f"{p.parent.name}_{p.name}")
    (flat / "notes.txt").write_text("not an image")
    for suffix in (".npz", ".parquet"):
        out = tmp_path / f"flat{suffix}"
        result = embed_images(ckpt, flat, out, overrides=QUIET)
        got = read_embeddings(out)
        assert not result["labelled"] and result["n"] == 5
        assert got["labels"] is None and got["class_names"] is None
        assert got["paths"] == sorted(str(p) for p in flat.resolve().glob("*.png"))
    with np.load(tmp_path / "flat.npz") as npz:
        assert "labels" not in npz and "class_names" not in npz


def test_an_exported_folder_embeds_the_same(ckpt, tree, tmp_path):
    exported = tmp_path / "exp"
    export_encoder(ckpt, exported)
    embed_images(ckpt, tree / "val", tmp_path / "a.npz", overrides=QUIET)
    embed_images(exported, tree / "val", tmp_path / "b.npz", overrides=QUIET)
    a, b = read_embeddings(tmp_path / "a.npz"), read_embeddings(tmp_path / "b.npz")
    assert np.array_equal(a["embeddings"], b["embeddings"]) and a["paths"] == b["paths"]
    with pytest.raises(ValueError, match="exported without --head"):
        embed_images(exported, tree / "val", tmp_path / "c.npz", features="head")
    assert not (tmp_path / "c.npz").exists()


# --------------------------------------------------------------------------- bad files


@pytest.fixture()
def broken(tree, tmp_path) -> tuple[Path, Path]:
    """A copy of val/ with one unreadable file in class b: ``(folder, bad file)``."""
    folder = tmp_path / "broken"
    shutil.copytree(tree / "val", folder)
    bad = folder / "b" / "9_broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
    return folder, bad


def test_unreadable_file_stops_and_writes_nothing(ckpt, broken, tmp_path):
    folder, bad = broken
    out = tmp_path / "e.npz"
    with pytest.raises(ValueError, match="cannot read image") as info:
        embed_images(ckpt, folder, out, overrides=QUIET)
    assert str(bad.resolve()) in str(info.value) and "data.bad_files=skip" in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken"]  # no output, no temp file


def test_unreadable_file_is_skipped_and_counted(ckpt, broken, tmp_path):
    """With ``data.bad_files=skip`` (two DataLoader workers here) the file is left out,
    counted and listed; the other rows keep their paths and labels."""
    folder, bad = broken
    out = tmp_path / "e.npz"
    with pytest.warns(UserWarning, match="skipped 1 unreadable image file"):
        result = embed_images(ckpt, folder, out, overrides=[
            *QUIET, "data.bad_files=skip", "data.num_workers=2", "eval.batch_size=4"])
    got = read_embeddings(out)
    assert result["skipped"] == [str(bad.resolve())] == got["skipped"]
    assert result["n"] == 12 and got["embeddings"].shape == (12, 128)
    assert str(bad.resolve()) not in got["paths"]
    assert got["index"].tolist() == [i for i in range(13) if i != 8]  # b/9_broken is item 8
    assert got["labels"].tolist() == [0] * 4 + [1] * 4 + [2] * 4
    files = [p for p in got["paths"]]
    np.testing.assert_allclose(got["embeddings"], direct_features(load_encoder(ckpt), files),
                               rtol=1e-5, atol=1e-6)


def test_folder_of_only_unreadable_files(ckpt, tmp_path):
    folder = tmp_path / "junk"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"garbage")
    with pytest.raises(ValueError, match=r"no readable image .* \(1 skipped\)"):
        embed_images(ckpt, folder, tmp_path / "e.npz", overrides=[*QUIET,
                                                                  "data.bad_files=skip"])
    assert not (tmp_path / "e.npz").exists()


# ---------------------------------------------------------------------------- bad input


def test_existing_output_is_refused_then_replaced_with_overwrite(ckpt, tree, tmp_path):
    out = tmp_path / "e.npz"
    out.write_bytes(b"earlier result")
    with pytest.raises(ValueError, match="exists; pass --overwrite"):
        embed_images(ckpt, tree / "val", out, overrides=QUIET)
    assert out.read_bytes() == b"earlier result"
    embed_images(ckpt, tree / "val", out, overwrite=True, overrides=QUIET)
    assert read_embeddings(out)["embeddings"].shape == (12, 128)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.npz"]  # no temporary file left
    # A run that fails after the checks leaves the earlier file as it was.
    before = out.read_bytes()
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "x.png").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="cannot read image"):
        embed_images(ckpt, junk, out, overwrite=True, overrides=QUIET)
    assert out.read_bytes() == before


@pytest.mark.parametrize(("output", "message"), [
    ("e.csv", "unknown output extension '.csv'"),
    ("e", "unknown output extension '\\(none\\)'"),
    ("folder.npz", "is a folder"),
])
def test_bad_output_is_refused_before_any_work(ckpt, tree, tmp_path, output, message):
    (tmp_path / "folder.npz").mkdir()
    with pytest.raises(ValueError, match=message):
        embed_images(tmp_path / "no-such-checkpoint", tree / "val", tmp_path / output)


def test_missing_pyarrow_names_the_extra(ckpt, tree, tmp_path, monkeypatch):
    real_import = builtins.__import__

    def no_pyarrow(name, *args, **kwargs):
        if name.startswith("pyarrow"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pyarrow)
    with pytest.raises(ParquetNotInstalledError, match='pip install "varcon\\[parquet\\]"'):
        embed_images(ckpt, tree / "val", tmp_path / "e.parquet")
    assert not (tmp_path / "e.parquet").exists()


@pytest.mark.parametrize(("given", "message"), [
    ("no/such/folder", "no such folder, and not a dataset"),
    ("digits:valid", "unknown split 'valid'"),
    ("TREE", "looks like an ImageFolder dataset root"),
])
def test_bad_input_is_refused(ckpt, tree, tmp_path, given, message):
    given = str(tree) if given == "TREE" else given
    with pytest.raises(ValueError, match=message):
        embed_images(ckpt, given, tmp_path / "e.npz")
    with pytest.raises(ValueError, match="features must be 'encoder' or 'head'"):
        embed_images(ckpt, tree / "val", tmp_path / "e.npz", features="logits")
    assert not (tmp_path / "e.npz").exists()


def test_folder_mixing_files_and_class_folders_is_refused(ckpt, tree, tmp_path):
    mixed = tmp_path / "mixed"
    shutil.copytree(tree / "val", mixed)
    shutil.copy(next((tree / "val" / "a").glob("*.png")), mixed / "loose.png")
    with pytest.raises(ValueError, match=r"both image files .* and class folders"):
        embed_images(ckpt, mixed, tmp_path / "e.npz")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="holds no image file"):
        embed_images(ckpt, empty, tmp_path / "e.npz")


# ---------------------------------------------------------------------------- torchrun


def _torchrun_embed(ckpt: Path, given: str | Path, out: Path, *overrides: str
                    ) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "varcon", "embed", "--checkpoint", str(ckpt), "--input", str(given),
         "--output", str(out), "train.progress=off", "data.num_workers=0", *overrides],
        capture_output=True, text=True, timeout=300, env=env,
    )


def test_torchrun_gives_the_one_process_file(ckpt, broken, tmp_path):
    """Two processes each embed every other image (here an odd number, one unreadable and
    skipped); the file rank 0 writes equals the one-process file row for row."""
    folder, bad = broken
    one = tmp_path / "one.npz"
    with pytest.warns(UserWarning, match="skipped 1 unreadable"):
        embed_images(ckpt, folder, one, overrides=[*QUIET, "data.bad_files=skip",
                                                   "eval.batch_size=4"])
    two = tmp_path / "two.npz"
    proc = _torchrun_embed(ckpt, folder, two, "data.bad_files=skip", "eval.batch_size=4")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert proc.stdout.count("embed (") == 1  # rank 0 prints, rank 1 does not
    a, b = read_embeddings(one), read_embeddings(two)
    assert b["skipped"] == a["skipped"] == [str(bad.resolve())]
    assert b["index"].tolist() == a["index"].tolist()
    assert list(b["paths"]) == list(a["paths"])
    assert b["labels"].tolist() == a["labels"].tolist()
    np.testing.assert_allclose(b["embeddings"], a["embeddings"], rtol=1e-5, atol=1e-6)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken", "one.npz", "two.npz"]


def test_torchrun_on_a_dataset_split(ckpt, tmp_path):
    one = tmp_path / "one.npz"
    embed_images(ckpt, "digits:test", one, overrides=QUIET)
    two = tmp_path / "two.npz"
    proc = _torchrun_embed(ckpt, "digits:test", two)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    a, b = read_embeddings(one), read_embeddings(two)
    assert len(b["index"]) == 450 and b["index"].tolist() == a["index"].tolist()
    assert b["labels"].tolist() == a["labels"].tolist()
    np.testing.assert_allclose(b["embeddings"], a["embeddings"], rtol=1e-5, atol=1e-6)


def test_torchrun_bad_file_stops_every_rank_and_writes_nothing(ckpt, broken, tmp_path):
    folder, bad = broken
    out = tmp_path / "e.npz"
    proc = _torchrun_embed(ckpt, folder, out)
    assert proc.returncode != 0
    # both ranks stop with the same clean message (the one that read the file, and the other)
    assert proc.stderr.count(f"error: cannot read image {bad.resolve()}") == 2, proc.stderr
    assert "embed.py" not in proc.stderr  # no traceback from varcon (torchrun adds its own)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken"]


