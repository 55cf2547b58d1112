import os
import pickle
import random

import numpy as np
import pytest
import torch

from varcon.runtime.checkpoint import (
    CheckpointError,
    atomic_save,
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
)


def _ckpt(**extra):
    return {"format": "varcon", "model": {"w": torch.ones(2)}, "config": {"a": [1, 2]},
            "network": {"encoder": "small_cnn"}, **extra}


def test_roundtrip_weights_only(tmp_path):
    path = tmp_path / "checkpoints" / "last.pt"
    atomic_save(_ckpt(rng=capture_rng_state()), path)
    state = load_checkpoint(path)
    assert torch.equal(state["model"]["w"], torch.ones(2))
    # a run directory is accepted too
    assert load_checkpoint(tmp_path)["config"] == {"a": [1, 2]}
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no tmp left


def test_rng_state_roundtrip():
    state = capture_rng_state()
    a = (random.random(), np.random.rand(), torch.rand(1))
    restore_rng_state(state)
    b = (random.random(), np.random.rand(), torch.rand(1))
    assert a[0] == b[0] and a[1] == b[1] and torch.equal(a[2], b[2])


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_code_executing_pickle_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": "varcon", "model": {}, "payload": _RunsCode()}, path)
    with pytest.raises(CheckpointError, match="refused to load"):
        load_checkpoint(path)
    raw = tmp_path / "raw.pt"
    raw.write_bytes(pickle.dumps(_RunsCode()))
    with pytest.raises(CheckpointError):
        load_checkpoint(raw)


def test_truncated_and_missing_and_foreign(tmp_path):
    path = tmp_path / "last.pt"
    atomic_save(_ckpt(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.pt")
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a varcon checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


def test_failed_save_keeps_previous(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    atomic_save(_ckpt(epoch=1), path)

    def boom(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError):
        atomic_save(_ckpt(epoch=2), path)
    monkeypatch.undo()
    assert load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]
