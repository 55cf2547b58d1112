"""``varcon figures`` takes the run as ``--checkpoint RUN`` (as every evaluation command does)
as well as the positional RUN_DIR: exactly one of them."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from clitools import assert_clean_error, run_cli

sys.path.append(str(Path(__file__).resolve().parents[1] / "reporting"))  # fake_runs
from fake_runs import write_run


@pytest.fixture
def run(tmp_path: Path) -> Path:
    # training curves only: no eval results, arrays or tau2 files (quick to draw)
    return write_run(tmp_path / "run", evals=(), arrays=False, tau2_epochs=None)


def _pngs(out: str) -> list[str]:
    return sorted(Path(line).name for line in out.splitlines() if line.endswith(".png"))


def test_figures_with_checkpoint_equals_positional(run, tmp_path, capsys):
    code, out, err = run_cli(capsys, "figures", "--checkpoint", run,
                             "--output-dir", tmp_path / "by_flag")
    assert code == 0, err
    by_flag = _pngs(out)
    assert "training_curves.png" in by_flag
    assert (tmp_path / "by_flag" / "training_curves.png").is_file()
    code, out, err = run_cli(capsys, "figures", run, "--output-dir", tmp_path / "positional")
    assert code == 0, err
    assert _pngs(out) == by_flag


def test_figures_checkpoint_file_means_its_run(run, capsys):
    ckpt = run / "checkpoints" / "last.pt"
    ckpt.write_bytes(b"not read by figures")
    code, _, err = run_cli(capsys, "figures", "--checkpoint", ckpt)
    assert code == 0, err
    assert (run / "figures" / "training_curves.png").is_file()  # RUN_DIR/figures by default


@pytest.mark.parametrize("argv, got", [([], "got neither"),
                                       (["RUN", "--checkpoint", "RUN"], "got both")])
def test_figures_needs_the_run_exactly_once(run, capsys, argv, got):
    code, out, err = run_cli(capsys, "figures", *(run if a == "RUN" else a for a in argv))
    assert code == 2 and out == ""
    assert_clean_error(err, "give the run once, as RUN_DIR or as --checkpoint RUN_DIR", got)
    assert not (run / "figures").exists()


def test_figures_of_a_missing_run_is_a_clean_error(tmp_path, capsys):
    code, _, err = run_cli(capsys, "figures", "--checkpoint", tmp_path / "nowhere")
    assert code == 2
    assert_clean_error(err, str(tmp_path / "nowhere"), "not a directory")
