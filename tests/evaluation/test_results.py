"""Result files: the common envelope, JSON-safe values, atomic writes that never lose an
earlier result."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from varcon.evaluation import results as R

CONTEXT = {"checkpoint": "/runs/a/checkpoints/last.pt", "method": "varcon",
           "encoder": "small_cnn", "dataset": "digits", "eval_dataset": "digits",
           "features": "encoder", "class_names": ["0", "1"]}


def write(out: Path, top1: float, **kwargs) -> Path:
    return R.write_result(out, "linear", results={"top1": top1}, settings={"epochs": 1},
                          context=CONTEXT, seconds=1.23456, **kwargs)


def test_envelope(tmp_path):
    path = write(tmp_path, 90.0)
    assert path == tmp_path / "linear.json"
    record = json.loads(path.read_text())
    assert list(record) == ["protocol", "format_version", "checkpoint", "method", "encoder",
                            "dataset", "eval_dataset", "features", "class_names", "settings",
                            "results", "seconds", "created"]
    assert record["protocol"] == "linear" and record["format_version"] == R.RESULT_FORMAT_VERSION
    assert record["results"] == {"top1": 90.0} and record["settings"] == {"epochs": 1}
    assert record["seconds"] == 1.235
    assert record["created"][4] == "-" and record["created"][10] == "T"
    assert R.read_result(path) == record


def test_name_differs_from_protocol(tmp_path):
    path = R.write_result(tmp_path, "transfer", name="transfer_cifar100", results={},
                          settings={}, context=CONTEXT, seconds=0)
    assert path.name == "transfer_cifar100.json"
    assert json.loads(path.read_text())["protocol"] == "transfer"


def test_earlier_results_are_kept(tmp_path):
    write(tmp_path, 1.0)
    write(tmp_path, 2.0)
    write(tmp_path, 3.0)  # same second: the kept names get a counter, nothing is lost
    current = json.loads((tmp_path / "linear.json").read_text())
    assert current["results"]["top1"] == 3.0
    kept = sorted(tmp_path.glob("linear-*.json"))
    assert len(kept) == 2
    assert sorted(json.loads(p.read_text())["results"]["top1"] for p in kept) == [1.0, 2.0]
    # <stem>-<YYYYmmdd-HHMMSS>[-n].json, stamped with the earlier file's time
    stems = [p.stem for p in kept]
    assert all(len(s.split("-")[1]) == 8 and len(s.split("-")[2]) == 6 for s in stems)


def test_a_failed_write_loses_nothing(tmp_path, monkeypatch):
    """The disk fills while the new result is written: the earlier one stays, under its own
    name, and no partial or temporary file is left."""
    write(tmp_path, 1.0)
    real = Path.write_bytes

    def disk_full(self, data):
        real(self, data[: len(data) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", disk_full)
    with pytest.raises(OSError, match="No space"):
        write(tmp_path, 2.0)
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["linear.json"]
    assert R.read_result(tmp_path / "linear.json")["results"]["top1"] == 1.0


def test_values_are_made_json_safe(tmp_path):
    path = R.write_json(tmp_path / "x.json", {
        "nan": float("nan"), "inf": math.inf, "np": np.float32(0.5), "int": np.int64(3),
        "tensor": torch.tensor(2.5), "path": Path("/a/b"), "tuple": (1, 2),
        "nested": {1: [np.float64("nan")]},
    })
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    record = json.loads(text)
    assert record == {"nan": None, "inf": None, "np": 0.5, "int": 3, "tensor": 2.5,
                      "path": "/a/b", "tuple": [1, 2], "nested": {"1": [None]}}


def test_write_json_without_keep_overwrites(tmp_path):
    R.write_json(tmp_path / "m.json", {"a": 1}, keep=False)
    R.write_json(tmp_path / "m.json", {"a": 2}, keep=False)
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


def test_save_array_is_atomic_and_exact(tmp_path):
    array = np.arange(12, dtype=np.int64).reshape(3, 4)
    path = R.save_array(tmp_path / "sub" / "confusion.npy", array)
    loaded = np.load(path)
    assert loaded.dtype == np.int64 and np.array_equal(loaded, array)
    assert [p.name for p in path.parent.iterdir()] == ["confusion.npy"]


def test_atomic_write_removes_its_temporary_file_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "probe.pt"
    target.write_bytes(b"old")
    monkeypatch.setattr(os, "replace", lambda a, b: (_ for _ in ()).throw(OSError("boom")))
    with pytest.raises(OSError):
        R.atomic_write_bytes(target, b"new")
    monkeypatch.undo()
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["probe.pt"]


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"protocol": "knn"}'])
def test_read_result_names_a_file_that_is_not_one(tmp_path, content):
    path = tmp_path / "knn.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=str(path)):
        R.read_result(path)


def test_read_result_of_a_missing_file(tmp_path):
    with pytest.raises(ValueError, match="cannot read evaluation result"):
        R.read_result(tmp_path / "nothing.json")
