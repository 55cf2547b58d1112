"""Groups' training curves in one figure (reporting/compare.py) and in the report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fake_runs import png_is_drawn, write_run

from varcon.reporting import build_report, group_runs, load_run
from varcon.reporting.compare import group_curves

pytest.importorskip("matplotlib")


def _set_knn(run: Path, values: dict[int, float]) -> None:
    """Replace the run's val_knn_top1 records by ``{epoch: value}``."""
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    lines = [r for r in lines if "val_knn_top1" not in r]
    lines += [{"epoch": e, "val_knn_top1": v} for e, v in values.items()]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))


def test_mean_and_band_per_group_and_epoch(tmp_path):
    a0 = write_run(tmp_path / "varcon-s0", method="varcon", seed=0, arrays=False)
    a1 = write_run(tmp_path / "varcon-s1", method="varcon", seed=1, arrays=False)
    b0 = write_run(tmp_path / "ce-s0", method="ce", seed=0, arrays=False)
    _set_knn(a0, {2: 40.0, 4: 50.0})
    _set_knn(a1, {2: 44.0, 4: 56.0})
    _set_knn(b0, {2: 30.0})
    runs = [load_run(p) for p in (a0, a1, b0)]
    groups, _ = group_runs(runs)
    labels = {g[0].path: g[0].method for g in groups}
    curves = group_curves(groups, labels, tmp_path / "out" / "curves.png")
    png_is_drawn(curves.path)
    assert curves.panels[0] == "val_knn_top1"
    assert curves.points["val_knn_top1"]["varcon"] == [(2, 42.0, 40.0, 44.0, 2),
                                                       (4, 53.0, 50.0, 56.0, 2)]
    assert curves.points["val_knn_top1"]["ce"] == [(2, 30.0, 30.0, 30.0, 1)]
    # tau2 is recorded by the varcon runs only: its panel has only that group
    assert set(curves.points["tau2_mean"]) == {"varcon"}
    assert "loss" in curves.panels


def test_nothing_to_draw_gives_no_file(tmp_path):
    run = write_run(tmp_path / "r", arrays=False)
    (run / "metrics.jsonl").unlink()
    curves = group_curves([[load_run(run)]], {run: "r"}, tmp_path / "c.png")
    assert curves.path is None and not (tmp_path / "c.png").exists()
    assert curves.panels == [] and curves.warnings == []


def test_report_shows_the_group_curves(tmp_path):
    for method in ("varcon", "supcon"):
        for seed in (0, 1):
            write_run(tmp_path / f"{method}-s{seed}", method=method, seed=seed, arrays=False)
    result = build_report(sorted(tmp_path.glob("*-s*")), tmp_path / "report")
    md = result.markdown.read_text()
    assert "## Training curves by group" in md
    assert "figures/group_curves.png" in md
    png_is_drawn(tmp_path / "report" / "figures" / "group_curves.png")
    assert "data:image/png;base64," in result.html.read_text()
    none = build_report(sorted(tmp_path.glob("*-s*")), tmp_path / "plain", figures="none")
    assert "Training curves by group" not in none.markdown.read_text()


def test_a_group_keeps_its_colour_in_every_panel(tmp_path):
    # ce comes first and records no tau2: the varcon group must not take ce's colour in the
    # tau2 panels (per-panel colouring drew it blue there and orange in the kNN panel)
    ce = write_run(tmp_path / "ce-s0", method="ce", seed=0, arrays=False)
    var = write_run(tmp_path / "varcon-s0", method="varcon", seed=0, arrays=False)
    groups = [[load_run(ce)], [load_run(var)]]
    labels = {ce: "ce", var: "varcon"}
    curves = group_curves(groups, labels, tmp_path / "c.png")
    assert set(curves.colors["tau2_mean"]) == {"varcon"}
    assert {curves.colors[p]["varcon"] for p in curves.panels} == {
        curves.colors["val_knn_top1"]["varcon"]}
    assert curves.colors["loss"]["ce"] == curves.colors["val_knn_top1"]["ce"]
    assert curves.colors["loss"]["ce"] != curves.colors["loss"]["varcon"]


@pytest.mark.parametrize("count", [3, 12, 25])
def test_every_group_looks_different(count):
    import matplotlib

    from varcon.reporting.compare import _group_styles

    styles = _group_styles(count, matplotlib.colormaps)
    assert len(styles) == count and len(set(styles)) == count  # (colour, line style) pairs
    assert all(s.startswith("#") and len(s) == 7 for s, _ in styles)


def _runs_for_report(tmp_path: Path) -> list[Path]:
    for method in ("varcon", "ce"):
        for seed in (0, 1):
            write_run(tmp_path / "runs" / f"{method}-s{seed}", method=method, seed=seed,
                      arrays=False)
    return sorted((tmp_path / "runs").glob("*-s*"))


def test_report_with_linked_images_points_at_files_that_exist(tmp_path):
    import re

    result = build_report(_runs_for_report(tmp_path), tmp_path / "rep", html_images="link")
    page = result.html.read_text()
    assert "data:image/png" not in page
    sources = re.findall(r'<img src="([^"]+)"', page)
    assert "figures/group_curves.png" in sources and len(sources) > 3
    for src in sources:
        png_is_drawn(result.html.parent / src)
    inline = build_report(_runs_for_report(tmp_path / "again"), tmp_path / "rep2")
    assert inline.html.stat().st_size > 20 * result.html.stat().st_size  # PNGs inlined


def test_report_with_only_the_curves(tmp_path):
    result = build_report(_runs_for_report(tmp_path), tmp_path / "rep", figures="curves")
    md = result.markdown.read_text()
    assert "## Training curves by group" in md
    assert "\n## Figures" not in md
    assert sorted(p.name for p in (tmp_path / "rep" / "figures").iterdir()) == [
        "group_curves.png", "headline.png"]


def test_bad_report_options_are_named(tmp_path):
    runs = _runs_for_report(tmp_path)
    with pytest.raises(ValueError, match="html_images='svg'"):
        build_report(runs, tmp_path / "rep", html_images="svg")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="'curves'"):
        build_report(runs, tmp_path / "rep", figures="some")  # type: ignore[arg-type]


def test_linked_image_paths_are_quoted_and_escaped():
    from varcon.reporting import render

    page = render.to_html([render.Image(path='figures/a b/"x".png', data=b"png", alt="x")],
                          "t", images="link")
    assert 'src="figures/a%20b/%22x%22.png"' in page
    inline = render.to_html([render.Image(path="f.png", data=b"png", alt="x")], "t")
    assert 'src="data:image/png;base64,cG5n"' in inline
