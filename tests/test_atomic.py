"""varcon._atomic: a file is replaced whole or not at all."""

from __future__ import annotations

import numpy as np
import pytest

from varcon._atomic import atomic_path, atomic_write_bytes, atomic_write_text


def test_the_file_appears_only_when_the_block_ends(tmp_path):
    target = tmp_path / "sub" / "result.json"  # missing parents are made
    with atomic_path(target) as tmp:
        tmp.write_text("new")
        assert not target.exists() and tmp.parent == target.parent
        assert tmp.name.startswith(".result.json.tmp-")
    assert target.read_text() == "new"
    assert [p.name for p in target.parent.iterdir()] == ["result.json"]


@pytest.mark.parametrize("error", [RuntimeError("disk full"), KeyboardInterrupt()])
def test_an_error_keeps_the_earlier_file_and_leaves_no_temporary(tmp_path, error):
    target = tmp_path / "metrics.jsonl"
    target.write_text("earlier")
    with pytest.raises(type(error)), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise error
    assert target.read_text() == "earlier"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.jsonl"]


def test_suffix_lets_numpy_write_the_temporary_name_it_is_given(tmp_path):
    target = tmp_path / "confusion.npy"
    with atomic_path(target, suffix=".npy") as tmp:
        np.save(tmp, np.arange(3))  # without the suffix np.save would write tmp + ".npy"
    assert np.load(target).tolist() == [0, 1, 2]
    assert [p.name for p in tmp_path.iterdir()] == ["confusion.npy"]


def test_fsync_and_the_byte_and_text_writers(tmp_path):
    with atomic_path(tmp_path / "ckpt.pt", fsync=True) as tmp:
        tmp.write_bytes(b"\x00\x01")
    assert (tmp_path / "ckpt.pt").read_bytes() == b"\x00\x01"
    atomic_write_bytes(tmp_path / "b", b"abc")
    atomic_write_text(tmp_path / "t", "é")
    assert (tmp_path / "b").read_bytes() == b"abc"
    assert (tmp_path / "t").read_bytes() == "é".encode()
