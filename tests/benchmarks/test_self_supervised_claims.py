"""The self-supervised study's verdicts (benchmarks/self_supervised/claims.py) on fake runs."""

from __future__ import annotations

import json
from pathlib import Path

from scripttools import REPO, load_script

claims = load_script("ssl_claims", REPO / "benchmarks" / "self_supervised" / "claims.py")
write_run = load_script("fake_runs", REPO / "tests" / "reporting" / "fake_runs.py").write_run


def _run(results: Path, group: str, seed: int, knn: float, linear: float) -> Path:
    method = "varcon" if group.startswith("sup10") else (
        "simclr" if group.startswith("simclr") else "varcon_ssl")
    return write_run(results / f"{group}-s{seed}", method=method, seed=seed, name=group,
                     arrays=False, evals=("knn", "linear"), knn_top1=knn + 1,  # @200 = -1
                     linear_top1=linear)


def _labeled10(run: Path, knn: float, linear: float) -> None:
    out = run / "eval-labeled10"
    out.mkdir()
    (out / "knn.json").write_text(json.dumps({"results": {"top1": {"200": knn}}}))
    (out / "linear.json").write_text(json.dumps({"results": {"top1": linear}}))


def _find(verdicts, claim_start, metric_start):
    found = [v for v in verdicts if v.claim.startswith(claim_start)
             and v.metric.startswith(metric_start)]
    assert len(found) == 1, [(v.claim, v.metric) for v in found]
    return found[0]


def test_verdicts_pair_seeds_weigh_ablations_against_seed_noise_and_read_the_10pct_evals(
        tmp_path):
    for seed, (a, b) in enumerate([(50.0, 45.0), (52.0, 46.0), (51.0, 45.5)]):
        _run(tmp_path, "varcon_ssl", seed, knn=a, linear=a + 5)
        _run(tmp_path, "simclr", seed, knn=b, linear=a + 5 + [0.5, -0.5, 0.2][seed])
    _run(tmp_path, "varcon_ssl-inst", 0, knn=40.0, linear=55.0)  # 10 points: matters
    _run(tmp_path, "varcon_ssl-eps0", 0, knn=50.2, linear=55.0)  # 0.2 points: noise
    for seed in (0, 1):
        semi = _run(tmp_path, "semi-varcon_ssl", seed, knn=60.0, linear=62.0 + seed)
        _run(tmp_path, "sup10-varcon", seed, knn=30.0 + seed, linear=35.0)
        _labeled10(tmp_path / f"varcon_ssl-s{seed}", knn=40.0, linear=44.0 + seed)
        assert semi.is_dir()
    runs = claims.read_all(tmp_path)
    assert runs["semi-varcon_ssl"][1]["labeled10.linear.top1"] == 63.0  # its own eval
    assert runs["varcon_ssl"][1]["labeled10.linear.top1"] == 45.0  # eval-labeled10/
    verdicts = claims.all_claims(runs)
    assert _find(verdicts, "varcon_ssl beats simclr", "kNN").verdict == "holds"
    assert _find(verdicts, "varcon_ssl beats simclr", "linear").verdict == "within noise"
    assert _find(verdicts, "the part matters: instance", "kNN").verdict == "holds"
    assert _find(verdicts, "the part matters: fixed tau2", "kNN").verdict == "within noise"
    assert _find(verdicts, "the part matters: K = 10", "kNN").verdict == "not run yet"
    assert _find(verdicts, "10% labels: semi-supervised", "kNN").verdict == "holds"
    assert _find(verdicts, "10% labels: using them", "linear").verdict == "holds"
    # the script end to end: table, rules, JSON and the figure
    code = claims.main([str(tmp_path), "--json", str(tmp_path / "c.json"), "--figure",
                        str(tmp_path / "f.png")])
    assert code == 0 and (tmp_path / "f.png").stat().st_size > 10_000
    assert len(json.loads((tmp_path / "c.json").read_text())) == len(verdicts)


def test_two_seeds_weigh_the_mean_difference_against_seed_noise_not_their_own_spread(tmp_path):
    # main runs: a seed std of 1 point on every metric
    for seed, (a, b) in enumerate([(50.0, 45.0), (52.0, 47.0), (51.0, 46.0)]):
        _run(tmp_path, "varcon_ssl", seed, knn=a, linear=a)
        _run(tmp_path, "simclr", seed, knn=b, linear=b)
    for seed in (1, 2):
        # +1.5 on both seeds: a paired t-test (1 df, sd 0) would call it certain
        _run(tmp_path, "semi-varcon_ssl", seed, knn=41.5 + seed, linear=41.5 + seed)
        _labeled10(tmp_path / f"varcon_ssl-s{seed}", knn=40.0 + seed, linear=40.0 + seed)
        _run(tmp_path, "sup10-varcon", seed, knn=55.0, linear=54.0 - seed)  # 13 points above
    verdicts = claims.all_claims(claims.read_all(tmp_path))
    using = _find(verdicts, "10% labels: using them", "linear")
    assert using.verdict == "within noise", using
    assert "= +1.50, sigma = 1 (main runs" in using.why  # 1.5 / (1 · √(2/2)): under 2
    assert _find(verdicts, "10% labels: semi-supervised", "kNN").verdict == "does not hold"
    # a noisier metric among the few-label arms sets sigma where it is the larger
    (tmp_path / "semi-varcon_ssl-s2" / "eval" / "knn.json").write_text(
        json.dumps({"results": {"top1": {"200": 49.5}}}))  # seeds 1, 2: 42.5, 49.5
    knn = _find(claims.all_claims(claims.read_all(tmp_path)), "10% labels: using them", "kNN")
    assert "arms with 2+ seeds" in knn.why and knn.verdict == "within noise", knn
