"""benchmarks/self_supervised/same_run.py: a retrained run is the committed one only if its
loss curve and evaluations are equal; wall-clock fields and statistics only one run records
are not differences."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scripttools import REPO, load_script

same_run = load_script("ssl_same_run", REPO / "benchmarks" / "self_supervised" / "same_run.py")


def _write(run: Path, epochs: list[dict], evals: dict[str, dict]) -> Path:
    (run / "eval").mkdir(parents=True)
    (run / "metrics.jsonl").write_text("".join(json.dumps(e) + "\n" for e in epochs))
    for name, results in evals.items():
        (run / "eval" / f"{name}.json").write_text(
            json.dumps({"protocol": name, "results": results, "seconds": 1.0}))
    return run


EPOCHS = [{"epoch": 1, "loss": 5.889368338462634, "epoch_time": 109.0, "images_per_s": 91.6},
          {"epoch": 2, "loss": 5.5, "epoch_time": 100.0, "images_per_s": 99.0,
           "val_knn_top1": 30.1}]
EVALS = {"knn": {"top1": {"200": 44.1}}, "linear": {"top1": 47.54, "top5": 91.44}}


def test_equal_curves_and_evals_are_the_same_run_whatever_the_clock_and_newer_statistics(
        tmp_path, capsys):
    committed = _write(tmp_path / "committed", EPOCHS, EVALS)
    later = [dict(e, epoch_time=240.0, images_per_s=41.5, effective_rank=17.2) for e in EPOCHS]
    retrained = _write(tmp_path / "retrained", later, EVALS)
    assert same_run.differences(committed, retrained) == []
    assert same_run.main([str(committed), str(retrained)]) == 0
    assert "reproduces" in capsys.readouterr().out


@pytest.mark.parametrize("change, expected", [
    (lambda e, v: e[0].update(loss=5.889368338462635), "epoch 1: loss"),
    (lambda e, v: e[1].update(val_knn_top1=30.2), "epoch 2: val_knn_top1"),
    (lambda e, v: e.pop(), "2 epochs committed, 1 retrained"),
    (lambda e, v: v["linear"].update(top1=47.56), "eval/linear.json"),
    (lambda e, v: v.pop("knn"), "eval/knn.json: missing"),
])
def test_any_difference_in_a_statistic_or_an_evaluation_is_reported(
        tmp_path, capsys, change, expected):
    committed = _write(tmp_path / "committed", EPOCHS, EVALS)
    epochs = [dict(e) for e in EPOCHS]
    evals = {k: dict(v) for k, v in EVALS.items()}
    change(epochs, evals)
    retrained = _write(tmp_path / "retrained", epochs, evals)
    found = same_run.differences(committed, retrained)
    assert len(found) == 1 and expected in found[0]
    assert same_run.main([str(committed), str(retrained)]) == 1
    assert expected in capsys.readouterr().err


def test_a_folder_that_is_not_a_run_is_named(tmp_path):
    committed = _write(tmp_path / "committed", EPOCHS, EVALS)
    with pytest.raises(FileNotFoundError, match="finished run directory"):
        same_run.differences(committed, tmp_path / "empty")


def test_a_metrics_line_that_cannot_be_read_is_an_error_not_a_skipped_epoch(tmp_path):
    committed = _write(tmp_path / "committed", EPOCHS, EVALS)
    retrained = _write(tmp_path / "retrained", EPOCHS, EVALS)
    with (retrained / "metrics.jsonl").open("a") as f:
        f.write("{not json\n")
    with pytest.raises(ValueError, match=r"metrics\.jsonl:3: not JSON"):
        same_run.differences(committed, retrained)
