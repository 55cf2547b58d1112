"""The accuracy study's verdicts (benchmarks/accuracy/claims.py) on fake run folders."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scripttools import REPO, load_script

claims = load_script("accuracy_claims", REPO / "benchmarks" / "accuracy" / "claims.py")
write_run = load_script("fake_runs", REPO / "tests" / "reporting" / "fake_runs.py").write_run

VARCON, SUPCON, CE = [70.0, 71.5, 72.0], [65.0, 66.0, 67.5], [75.0, 77.0, 76.0]


def _run(results: Path, group: str, seed: int, **kw) -> Path:
    method = group.split("-")[0]
    return write_run(results / f"{group}-s{seed}", method=method, seed=seed, name=group,
                     arrays=False, **kw)


@pytest.fixture
def results(tmp_path):
    for seed in range(3):
        # kNN: varcon vs supcon differ by +1, -1, +0.5: within noise
        _run(tmp_path, "varcon", seed, linear_top1=VARCON[seed], fewshot_mean=VARCON[seed],
             knn_top1=60 + [1, -1, .5][seed])
        _run(tmp_path, "supcon", seed, linear_top1=SUPCON[seed], fewshot_mean=SUPCON[seed],
             knn_top1=60.0)
        _run(tmp_path, "ce", seed, linear_top1=CE[seed], fewshot_mean=CE[seed], knn_top1=60.0)
    return tmp_path


def _find(verdicts, claim, metric_start="", compared=""):
    found = [v for v in verdicts if v.claim == claim and v.metric.startswith(metric_start)
             and v.compared.startswith(compared)]
    assert len(found) == 1, [(v.claim, v.metric, v.compared) for v in found]
    return found[0]


def test_paired_verdicts_follow_a_one_sided_paired_t_test(results):
    verdicts = claims.all_claims(claims.read_results(results))
    up = _find(verdicts, "higher linear top-1 than SupCon")
    assert up.verdict == "holds"
    assert up.values == "varcon: 70.00, 71.50, 72.00; supcon: 65.00, 66.00, 67.50"
    d = [a - b for a, b in zip(VARCON, SUPCON, strict=True)]  # 5, 5.5, 4.5
    assert up.difference == f"{statistics.fmean(d):+.3g} ± {statistics.stdev(d):.2g}"
    assert "seeds [0, 1, 2]" in up.why
    assert _find(verdicts, "higher linear top-1 than cross-entropy").verdict == "does not hold"
    assert _find(verdicts, "higher kNN accuracy than SupCon").verdict == "within noise"


def test_no_difference_on_any_seed_is_within_noise(results):
    # every method has ARI 0.70 for k-means: zero difference on every seed, std 0
    v = _find(claims.all_claims(claims.read_results(results)),
              "better clustering agreement with the labels than SupCon", "ARI, k-means")
    assert v.verdict == "within noise" and v.difference == "+0 ± 0"
    assert "p = 0.500 (higher), 0.500 (lower)" in v.why


def test_missing_runs_are_named_not_guessed(results):
    verdicts = claims.all_claims(claims.read_results(results))
    eps = _find(verdicts, "adaptive tau2 (eps 0.02) beats a fixed one (eps 0)", "linear")
    assert eps.verdict == "not run yet" and "varcon-eps0-s<seed>" in eps.why
    batch = _find(verdicts, "VarCon loses less than SupCon from batch 512 to 64", "linear")
    assert batch.verdict == "not run yet"
    assert "varcon-b64-s0" in batch.why and "supcon-b512-s0" in batch.why


def test_an_interrupted_run_or_a_temporary_copy_is_not_read(results):
    (results / "varcon-eps0-s0").mkdir()  # interrupted: no eval/linear.json
    (results / ".tmp-varcon-eps0-s1").mkdir()
    runs = claims.read_results(results)
    assert sorted(runs) == ["ce", "supcon", "varcon"]
    assert sorted(runs["varcon"]) == [0, 1, 2]


def test_single_seed_contrast_is_measured_against_the_main_runs_seed_noise(results):
    runs = claims.read_results(results)
    sigma, df = claims.seed_noise(runs, "linear.top1")
    pooled = [statistics.variance(v) for v in (VARCON, SUPCON, CE)]
    assert df == 6 and math.isclose(sigma, math.sqrt(statistics.fmean(pooled)))
    # VarCon loses 1 point from 512 to 64, SupCon loses 10: contrast +9, far beyond 2*sigma*2
    for group, top1 in (("varcon-b64", 70.0), ("varcon-b512", 71.0), ("supcon-b64", 56.0),
                        ("supcon-b512", 66.0)):
        _run(results, group, 0, linear_top1=top1)
    verdicts = claims.all_claims(claims.read_results(results))
    v = _find(verdicts, "VarCon loses less than SupCon from batch 512 to 64", "linear")
    assert v.difference == "+9" and v.verdict == "holds"
    assert f"sigma = {sigma:.3g}" in v.why and "√4" in v.why


def test_a_contrast_within_twice_its_noise_is_within_noise(results):
    runs = claims.read_results(results)
    sigma, _ = claims.seed_noise(runs, "linear.top1")
    for group, top1 in (("varcon-novel", 50.0 + 2 * sigma), ("supcon-novel", 50.0),
                        ("ce-novel", 50.0 + 5 * sigma)):
        _run(results, group, 0, linear_top1=top1, fewshot_mean=top1)
    verdicts = claims.all_claims(claims.read_results(results))
    fs = "better few-shot accuracy on 5 classes unseen in pre-training"
    # +2 sigma over sqrt(2) runs' noise: z = 1.41
    assert _find(verdicts, fs, "5-way 1-shot", "varcon-novel vs supcon").verdict == "within noise"
    assert _find(verdicts, fs, "5-way 1-shot", "varcon-novel vs ce").verdict == "does not hold"
    tr = _find(verdicts, "better linear transfer to 5 classes unseen in pre-training",
               compared="varcon-novel vs supcon")
    assert tr.verdict == "within noise" and "linear.top1" in tr.why  # the noise's stand-in


def test_tau2_rise_and_spread(results):
    verdicts = claims.all_claims(claims.read_results(results))
    rise = _find(verdicts, "mean tau2 rises over training")
    assert rise.verdict == "holds" and rise.why == "rises on 3 of 3 seeds"
    assert rise.metric == "tau2 mean, epoch 6 − epoch 1"  # fake runs: 0.089 -> 0.109
    spread = _find(verdicts, "the spread of tau2 persists")
    assert spread.verdict == "holds" and spread.difference == "1.00, 1.00, 1.00"


def test_curve_metrics_read_the_knn_curve_and_tau2_ends():
    records = [{"epoch": 1, "tau2_mean": 0.09, "tau2_std": 0.02, "loss": 3.0},
               {"epoch": 2, "val_knn_top1": 40.0, "tau2_mean": 0.092, "tau2_std": 0.019},
               {"epoch": 4, "val_knn_top1": 50.0, "tau2_mean": 0.095, "tau2_std": 0.008}]
    out = claims.curve_metrics(records)
    assert out["curve.knn_mean"] == 45.0 and out["curve.knn_epoch4"] == 50.0
    assert (out["tau2.mean_first"], out["tau2.std_last"]) == (0.09, 0.008)
    assert claims.curve_metrics([{"epoch": 1, "loss": 1.0}]) == {}


def test_command_prints_the_table_and_writes_json(results, tmp_path_factory, capsys):
    out = tmp_path_factory.mktemp("out") / "claims.json"
    assert claims.main([str(results), "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert text.startswith("9 finished runs in ")
    assert "| higher linear top-1 than SupCon | linear top-1 (%) | varcon vs supcon |" in text
    assert "How a verdict is reached" not in text and "Paired over seeds" in text
    saved = json.loads(out.read_text())
    assert set(saved[0]) == {"claim", "metric", "compared", "values", "difference", "verdict",
                             "why"}


def test_ablation_figure_draws_a_panel_per_ablation_that_has_runs(results, tmp_path_factory,
                                                                   capsys):
    pytest.importorskip("matplotlib")
    from PIL import Image

    out = tmp_path_factory.mktemp("fig")
    assert claims.ablation_figure(claims.read_results(results), out / "none.png") == []
    assert not (out / "none.png").exists()  # main runs only: no ablation to draw

    _run(results, "varcon-b64", 0, linear_top1=69.0)
    _run(results, "supcon-b512", 0, linear_top1=66.0)
    assert claims.ablation_figure(claims.read_results(results), out / "b.png") == ["batch"]

    for group in ("varcon-autoaugment", "supcon-randaugment", "varcon-novel", "ce-novel"):
        _run(results, group, 0, linear_top1=60.0, fewshot_mean=55.0)
    for seed in (0, 1):
        _run(results, "varcon-eps0", seed, linear_top1=68.0 + seed)
    assert claims.main([str(results), "--figure", str(out / "all.png")]) == 0
    assert "(batch, augment, epsilon, novel)" in capsys.readouterr().err
    with Image.open(out / "all.png") as image:
        assert image.format == "PNG" and image.width > 1000 and image.height > 800  # 2 x 2
        gray = np.asarray(image.convert("L"))
    assert (gray < 250).mean() > 0.02  # drawn, not blank


def test_a_missing_results_folder_names_the_fix(tmp_path, capsys):
    with pytest.raises(SystemExit):
        claims.main([str(tmp_path / "nope")])
    assert "run benchmarks/accuracy/run.sh first" in capsys.readouterr().err


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 100), st.floats(0, 100)), min_size=2, max_size=5))
def test_swapping_the_arms_swaps_the_verdict(pairs):
    runs = {"a": {s: {"m": x} for s, (x, _) in enumerate(pairs)},
            "b": {s: {"m": y} for s, (_, y) in enumerate(pairs)}}
    ab = claims.paired("c", "m", "m", runs, "a", "b").verdict
    ba = claims.paired("c", "m", "m", runs, "b", "a").verdict
    flipped = {"holds": "does not hold", "does not hold": "holds", "within noise": "within noise"}
    assert ba == flipped[ab]
