"""The test helper that spawns gloo processes retries a native crash, never a Python error."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from torch.multiprocessing.spawn import ProcessExitedException, ProcessRaisedException

from glootools import spawn_gloo

pytestmark = pytest.mark.slow


def _abort_in_first_attempt(rank, world, init_file, out_dir):
    if rank == 0 and Path(out_dir).name == "attempt1":
        os.abort()  # what gloo's teardown race does: SIGABRT, no Python exception
    Path(out_dir, f"rank{rank}").write_text(str(world))


def _always_abort(rank, world, init_file, out_dir):
    os.abort()


def _raise(rank, world, init_file, out_dir, counter):
    with open(counter, "a") as f:
        f.write(f"{rank}\n")
    raise AssertionError("a real failure")


def test_a_process_killed_by_a_signal_is_run_again_from_scratch(tmp_path):
    with pytest.warns(UserWarning, match="died of SIGABRT .*attempt 1 of 3"):
        out = spawn_gloo(_abort_in_first_attempt, 2, tmp_path)
    assert out == tmp_path / "attempt2"
    assert sorted(p.name for p in out.iterdir()) == ["rank0", "rank1"]


def test_the_last_attempt_s_crash_is_raised(tmp_path):
    with pytest.warns(UserWarning), pytest.raises(ProcessExitedException, match="SIGABRT"):
        spawn_gloo(_always_abort, 1, tmp_path, attempts=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["attempt1", "attempt2"]


def test_a_python_exception_is_never_retried(tmp_path):
    counter = tmp_path / "calls"
    with pytest.raises(ProcessRaisedException, match="a real failure"):
        spawn_gloo(_raise, 1, tmp_path / "runs", str(counter))
    assert counter.read_text() == "0\n"
