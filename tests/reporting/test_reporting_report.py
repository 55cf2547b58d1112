"""build_report: grouping and mean ± std, "not run" with its command, problems for non-runs,
figures in both files (relative paths / data URIs), HTML escaping, legacy result files."""

from __future__ import annotations

import base64
import html
import re
import statistics
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from fake_runs import write_run

from varcon.reporting import (
    build_report,
    evaluation_command,
    group_runs,
    load_run,
    run_metrics,
)

LINEAR = [90.0, 91.5, 93.25]  # linear top-1 of the three varcon seeds
KNN = [88.0, 88.5, 90.0]


def _expected(values: list[float], decimals: int = 2) -> str:
    return (f"{statistics.fmean(values):.{decimals}f} ± "
            f"{statistics.stdev(values):.{decimals}f}")


def _first_table(md: str, after: str = "") -> tuple[list[str], list[list[str]]]:
    """Header and rows of the first Markdown table (after the text ``after``), cells without
    Markdown escapes and bold marks."""
    md = md[md.index(after):] if after else md
    lines = md[md.index("\n| ") + 1:].split("\n\n", 1)[0].splitlines()

    def cells(line: str) -> list[str]:
        return [c.strip().replace("\\", "").replace("**", "")
                for c in re.split(r"(?<!\\)\|", line)[1:-1]]

    return cells(lines[0]), [cells(line) for line in lines[2:]]


@pytest.fixture(scope="module")
def report(full_run_figures: tuple[Path, Any], tmp_path_factory: pytest.TempPathFactory
           ) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("report")
    full, _ = full_run_figures  # seed 0 of the varcon group, its figures already drawn
    seeds = [full]
    for seed in (1, 2):
        overrides = {"train": {"device": "cpu"}, "data": {"num_workers": 0}} if seed == 1 else {}
        seeds.append(write_run(root / f"varcon-s{seed}", seed=seed, overrides=overrides,
                               arrays=False))
    # the session run has the helper's default accuracies; give every seed its known value
    for run, top1, knn in zip(seeds, LINEAR, KNN, strict=True):
        for name, old, new in (("linear.json", '"top1": 90.0', f'"top1": {top1}'),
                               ("knn.json", '"20": 88.0', f'"20": {knn}')):
            path = run / "eval" / name
            text = path.read_text()
            assert old in text
            path.write_text(text.replace(old, new))
    supcon = write_run(root / "supcon-s0", method="supcon", evals=("linear", "knn"),
                       arrays=False)
    ablation = write_run(root / "fixed-tau2", overrides={"loss": {"epsilon": 0.0}},
                         evals=("linear",), arrays=False,
                         class_names=["<b>", *(f"c{i}" for i in range(1, 10))])
    junk = root / "not-a-run"
    junk.mkdir()
    (junk / "notes.txt").write_text("hello")
    bad_yaml = root / "bad-yaml"
    bad_yaml.mkdir()
    (bad_yaml / "config.yaml").write_text("name: [unclosed\n")
    # make the session run's figures newer than its edited eval files: they stay as drawn
    manifest = full / "figures" / "figures.json"
    manifest.write_bytes(manifest.read_bytes())
    out = root / "out"
    result = build_report([*seeds, junk, supcon, ablation, bad_yaml], out)
    return {"result": result, "seeds": seeds, "supcon": supcon, "ablation": ablation,
            "junk": junk, "bad_yaml": bad_yaml, "out": out,
            "md": result.markdown.read_text(), "html": result.html.read_text()}


def test_files_written_and_non_runs_are_problems(report: dict[str, Any]) -> None:
    result = report["result"]
    assert result.markdown == report["out"] / "report.md"
    assert result.html == report["out"] / "report.html"
    assert len(result.problems) == 2
    assert str(report["junk"]) in result.problems[0] and "config.yaml" in result.problems[0]
    assert str(report["bad_yaml"]) in result.problems[1]
    assert result.runs == [*report["seeds"], report["supcon"], report["ablation"]]
    for text in (report["md"], html.unescape(report["html"])):
        assert "Problems" in text and "not-a-run" in text
        for run in result.runs:  # every run is reported
            assert run.name in text
    leftovers = [p for p in report["out"].rglob("*") if ".tmp" in p.name]
    assert leftovers == []


def test_headline_table_groups_seeds_with_mean_and_sample_std(report: dict[str, Any]) -> None:
    md = report["md"]
    assert md.index("| group |") < md.index("\n## ")  # the first thing after the intro
    header, rows = _first_table(md)
    # one headline metric per evaluation (transfer has none): 7 columns in all
    assert header == ["group", "seeds", "linear", "kNN k=20", "ARI k-means", "5-way 1-shot",
                      "mCA"]
    assert [r[0] for r in rows] == ["G1 varcon", "G2 supcon", "G3 fixed-tau2"]
    col = {h: i for i, h in enumerate(header)}
    varcon, supcon, ablation = rows
    assert ablation[col["seeds"]] == "0"
    assert varcon[col["seeds"]] == "0, 1, 2"
    assert varcon[col["linear"]] == _expected(LINEAR)
    assert varcon[col["kNN k=20"]] == _expected(KNN)
    assert supcon[col["linear"]] == "90.00"  # n = 1: no spread
    assert varcon[col["ARI k-means"]] == "0.700 ± 0.000"
    for name in ("5-way 1-shot", "mCA", "ARI k-means"):
        assert supcon[col[name]] == "not run"
    assert "91.58 ± 1.63" == _expected(LINEAR)  # the helper's arithmetic, by hand
    # the best mean of a column in bold; a column only one group has, none
    assert f"**{_expected(LINEAR)}**" in md and f"**{_expected(KNN)}**" in md
    assert "**0.700 ± 0.000**" not in md
    # the setting that tells groups apart, in the list under the table
    text = md.replace("\\", "")
    assert "- G3 fixed-tau2: method varcon, loss.epsilon = 0.0; 1 run" in text
    assert "- G1 varcon: method varcon, loss.epsilon = 0.02; 3 runs" in text
    # the full table of every metric, in its collapsible section
    header, rows = _first_table(md, after="<summary>All metrics by group</summary>")
    assert header == ["metric", "G1 varcon", "G2 supcon", "G3 fixed-tau2"]
    by_metric = {r[0]: r[1:] for r in rows}
    assert by_metric["linear top-1 (%)"][0] == _expected(LINEAR)
    assert by_metric["transfer → cifar100 top-1 (%)"][1] == "not run"
    header, rows = _first_table(md, after="<summary>Groups and their settings</summary>")
    assert "loss.epsilon" in header  # the one config key that differs between groups
    for bookkeeping in ("name", "train.device", "data.num_workers", "output_dir"):
        assert bookkeeping not in header


def test_not_run_lists_the_command(report: dict[str, Any]) -> None:
    """One line per evaluation some runs lack: which runs, and its command for RUN each."""
    supcon, md = report["supcon"], report["md"]
    assert evaluation_command("fewshot", supcon) == f"varcon fewshot --checkpoint {supcon}"
    for protocol, label in (("fewshot", "few-shot"), ("cluster", "clustering"),
                            ("robustness", "robustness")):
        command = evaluation_command(protocol, "RUN")
        assert f"- {label} not run for 2 runs (supcon-s0, fixed-tau2): `{command}`" in md
        assert f"<code>{html.escape(command)}</code>" in report["html"]
        assert md.count(f"varcon {protocol} --checkpoint") == 1  # once, not once per run
        assert evaluation_command(protocol, supcon) not in md
    assert "RUN in a command stands for each listed run's directory" in md
    transfer = evaluation_command("transfer", "RUN", "cifar100")
    assert f"`{transfer}`" in md
    assert "data.dataset=cifar100 data.root=..." in transfer
    assert "varcon linear --checkpoint" not in md  # every run has its linear probe
    # a single run lacking an evaluation gets its own, runnable command
    knn = evaluation_command("knn", report["ablation"])
    assert f"- kNN not run for fixed-tau2: `{knn}`" in md


def test_every_figure_is_in_both_files(report: dict[str, Any]) -> None:
    import json

    out, md, page = report["out"], report["md"], report["html"]
    figure_dirs = sorted(d for d in (out / "figures").iterdir() if d.is_dir())
    assert len(figure_dirs) == 3  # the first run of each group
    # plus the headline figure and the groups' curves in one figure
    assert sorted(f.name for f in (out / "figures").iterdir() if f.is_file()) == [
        "group_curves.png", "headline.png"]
    assert "](figures/group_curves.png)" in md and "](figures/headline.png)" in md
    total = 2
    for folder in figure_dirs:
        pngs = sorted(folder.glob("*.png"))
        assert pngs, folder
        for png in pngs:
            assert f"](figures/{folder.name}/{png.name})" in md
            uri = "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode()
            assert uri in page
        total += len(pngs)
    seed0 = json.loads((report["seeds"][0] / "figures" / "figures.json").read_text())
    assert len(list((out / "figures" / "full").glob("*.png"))) == len(seed0["figures"]) >= 8
    assert page.count("<img ") == total == page.count('src="data:image/png;base64,')
    assert md.count("![") == total
    assert "random_state = 0" in md.replace("\\", "")  # the settings each figure came from


def test_html_escapes_file_strings_and_is_well_formed(report: dict[str, Any]) -> None:
    page, md = report["html"], report["md"]
    assert "&lt;b&gt;" in page and "<b>" not in page
    assert "&lt;b&gt;" in md and "<b>" not in md

    class Counter(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.open: list[str] = []

        def handle_starttag(self, tag: str, attrs: Any) -> None:
            if tag not in ("meta", "img", "br"):  # void elements
                self.open.append(tag)

        def handle_endtag(self, tag: str) -> None:
            assert self.open.pop() == tag

    parser = Counter()
    parser.feed(page)
    assert parser.open == []


def test_partial_group_and_legacy_files(tmp_path: Path) -> None:
    """A seed without kNN gives (n=2); a run with only the old RUN_DIR/linear.json and
    RUN_DIR/knn.json is read from them; a corrupt eval file is a problem, the run stays."""
    runs = [write_run(tmp_path / f"s{s}", seed=s, evals=("linear", "knn") if s else ("linear",),
                      knn_top1=80.0 + s, arrays=False, tau2_epochs=None) for s in range(3)]
    legacy = write_run(tmp_path / "old", method="ce", evals=(), arrays=False)
    (legacy / "linear.json").write_text('{"top1": 77.5, "top5": 95.0}')
    (legacy / "knn.json").write_text('{"top1": 70.25, "top5": 90.0, "k": 200, '
                                     '"temperature": 0.1}')
    (runs[2] / "eval" / "cluster.json").write_text("not json")
    # an earlier result kept by a re-run is not a transfer target of its own
    (runs[0] / "eval" / "transfer_cifar100-20261123-120000.json").write_text("{}")
    result = build_report([*runs, legacy], tmp_path / "out", figures="none")
    assert len(result.problems) == 1 and "cluster.json" in result.problems[0]
    md = result.markdown.read_text()
    header, rows = _first_table(md)
    col = {h: i for i, h in enumerate(header)}
    assert rows[0][col["kNN k=20"]] == f"{_expected([81.0, 82.0])} (n=2)"
    assert rows[1][col["linear"]] == "77.50"
    # the legacy run has k=200 only: its kNN k=20 is "not run"; k=200 in the full table
    assert rows[1][col["kNN k=20"]] == "not run"
    header, rows = _first_table(md, after="<summary>All metrics by group</summary>")
    by_metric = {r[0]: r[1:] for r in rows}
    assert by_metric["kNN top-1 k=200 (%)"] == [f"{_expected([80.0, 81.0])} (n=2)", "70.25 ± –"]
    assert f"`{evaluation_command('knn', runs[0])}`" in md
    assert "20261123" not in md
    # no target known: placeholder; lacked by all four runs: one line, RUN for each
    assert f"`{evaluation_command('transfer', 'RUN')}`" in md
    assert "transfer not run for 4 runs (s0, s1, s2, old)" in md
    assert "Figures of" not in md.split("Per-run values")[1]


def test_only_non_runs_still_writes_a_report(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    result = build_report([tmp_path / "a", tmp_path / "missing"], tmp_path / "out")
    assert len(result.problems) == 2 and result.runs == []
    assert "No run could be read" in result.markdown.read_text()
    assert "missing" in result.html.read_text()


def test_figures_drawn_when_absent_or_reported_when_matplotlib_is_missing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = write_run(tmp_path / "r", method="supcon", evals=("linear",), arrays=False)
    result = build_report([run], tmp_path / "out", figures="all")
    assert (run / "figures" / "figures.json").is_file()  # drawn into the run directory
    assert (tmp_path / "out" / "figures" / "r" / "training_curves.png").is_file()
    assert result.warnings == []

    other = write_run(tmp_path / "q", method="supcon", evals=("linear",), arrays=False)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    result = build_report([other], tmp_path / "out2")
    assert any('pip install "varcon[plots]"' in w for w in result.warnings)
    assert result.problems == []
    assert "linear top-1" in result.markdown.read_text()


def test_group_runs_ignores_bookkeeping_only(tmp_path: Path) -> None:
    a = load_run(write_run(tmp_path / "a", seed=0, evals=(), arrays=False, tau2_epochs=None))
    b = load_run(write_run(tmp_path / "b", seed=5, evals=(), arrays=False, tau2_epochs=None,
                           overrides={"train": {"device": "cuda", "progress": "off",
                                                "loggers": ["tensorboard", "mlflow"]},
                                      "data": {"num_workers": 16},
                                      "tracking": {"run_name": "b", "mlflow_experiment": "e"}}))
    c = load_run(write_run(tmp_path / "c", seed=0, evals=(), arrays=False, tau2_epochs=None,
                           overrides={"optim": {"lr": 0.1}}))
    groups, differing = group_runs([a, b, c])
    assert [[r.path.name for r in g] for g in groups] == [["a", "b"], ["c"]]
    assert differing == ["optim.lr"]


def test_a_key_added_later_takes_its_default_for_older_runs(tmp_path: Path) -> None:
    """A run made before ``train.eval_every`` existed groups with one that sets it to its
    default (0), not with one that sets another value."""
    import yaml

    old = write_run(tmp_path / "old", seed=0, evals=(), arrays=False, tau2_epochs=None)
    config = yaml.safe_load((old / "config.yaml").read_text())
    config["train"].pop("eval_every", None)
    (old / "config.yaml").write_text(yaml.safe_dump(config))
    new = write_run(tmp_path / "new", seed=1, evals=(), arrays=False, tau2_epochs=None,
                    overrides={"train": {"eval_every": 0}})
    other = write_run(tmp_path / "other", seed=0, evals=(), arrays=False, tau2_epochs=None,
                      overrides={"train": {"eval_every": 2}})
    groups, differing = group_runs([load_run(old), load_run(new), load_run(other)])
    assert [[r.path.name for r in g] for g in groups] == [["old", "new"], ["other"]]
    assert differing == ["train.eval_every"]


def test_bad_figures_argument(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="figures="):
        build_report([], tmp_path, figures="some")  # type: ignore[arg-type]


def test_run_metrics_are_the_numbers_of_the_report_tables(tmp_path: Path) -> None:
    run = load_run(write_run(tmp_path / "r", linear_top1=71.25, knn_top1=64.5, kmeans_ari=0.4,
                             fewshot_mean=55.0, mca=48.0, evals=("linear", "knn", "cluster",
                                                                  "fewshot", "robustness")))
    got = run_metrics(run)
    assert got["linear.top1"] == 71.25
    assert (got["knn.top1.20"], got["knn.top1.200"]) == (64.5, 63.5)
    assert got["cluster.kmeans.ari"] == 0.4
    assert (got["fewshot.5w1s.ncm"], got["fewshot.5w5s.ncm"]) == (55.0, 63.0)
    assert got["robustness.mca"] == 48.0
    assert "robustness.mce" not in got  # reported as null: not a number, not listed
    assert not any(k.startswith("transfer.") for k in got)


def test_fine_tuning_is_a_column_and_its_command_is_listed_where_not_run(tmp_path: Path) -> None:
    tuned = write_run(tmp_path / "runs" / "tuned", seed=0, finetune_top1=94.25,
                      evals=("linear", "finetune"), arrays=False, tau2_epochs=None)
    frozen = write_run(tmp_path / "runs" / "frozen", seed=1, evals=("linear",), arrays=False,
                       tau2_epochs=None)
    assert run_metrics(load_run(tuned))["finetune.top1"] == 94.25
    result = build_report([tuned, frozen], tmp_path / "out", figures="none")
    md = result.markdown.read_text()
    header, rows = _first_table(md)
    assert header[2:] == ["linear", "fine-tune"]  # fine-tuning beside the probe
    assert len(rows) == 1 and rows[0][3] == "94.25 (n=1)"  # two seeds, one fine-tuned
    assert "fine-tune: fine-tune top-1 (%)" in md
    assert f"`{evaluation_command('finetune', frozen)}`" in md
    assert evaluation_command("finetune", frozen) == f"varcon finetune --checkpoint {frozen}"


def _retarget(run: Path, trained_in: Path) -> None:
    """Make ``run`` look copied from ``trained_in`` (its config's output_dir)."""
    import yaml

    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg["output_dir"] = str(trained_in)
    (run / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))


def test_commands_for_results_copied_without_checkpoints(tmp_path):
    from varcon.reporting.report import checkpoint_folder

    trained = tmp_path / "runs" / "supcon-s0"
    copied = write_run(tmp_path / "results" / "supcon-s0", method="supcon", evals=("linear",))
    _retarget(copied, trained)
    with_ckpt = write_run(tmp_path / "results" / "ce-s0", method="ce", evals=("linear",))
    _retarget(with_ckpt, tmp_path / "runs" / "ce-s0")
    (with_ckpt / "checkpoints" / "last.pt").write_bytes(b"x")
    in_place = write_run(tmp_path / "varcon-s0", evals=("linear",))  # output_dir is itself

    assert checkpoint_folder(load_run(copied)) == trained
    assert checkpoint_folder(load_run(with_ckpt)) == with_ckpt
    assert checkpoint_folder(load_run(in_place)) == in_place

    md = build_report([copied, with_ckpt, in_place], tmp_path / "rep",
                      figures="none").markdown.read_text()
    # all three lack kNN: one line; the copied run's RUN is the folder it was trained in
    assert f"`{evaluation_command('knn', 'RUN')}`" in md
    text = md.replace("\\", "")  # without Markdown escapes
    assert f"kNN not run for 3 runs (supcon-s0 (RUN = {trained}), ce-s0, varcon-s0)" in text
    assert evaluation_command("knn", copied) not in md
    assert "hold results without a checkpoint" in md
    # a single run lacking an evaluation: the command names its checkpoint's folder
    alone = build_report([copied], tmp_path / "rep1", figures="none").markdown.read_text()
    assert f"`{evaluation_command('knn', trained)}`" in alone
    assert f"`{evaluation_command('knn', copied)}`" not in alone

    plain = build_report([with_ckpt, in_place], tmp_path / "rep2",
                         figures="none").markdown.read_text()
    assert "without a checkpoint" not in plain


def test_an_evaluation_many_runs_lack_is_one_shortened_line(tmp_path: Path) -> None:
    """Twelve runs without fine-tuning: one line naming ten of them and "... and 2 more", one
    command with RUN; what the other sections and tables show is unchanged."""
    runs = [write_run(tmp_path / f"r{i:02d}", seed=i, evals=("linear", "knn", "cluster",
                                                             "fewshot", "robustness",
                                                             "transfer"),
                      arrays=False, tau2_epochs=None) for i in range(12)]
    md = build_report(runs, tmp_path / "out", figures="none").markdown.read_text()
    section = md[md.index("## Evaluations not run"):md.index("## Details")]
    items = [line for line in section.splitlines() if line.startswith("- ")]
    listed = ", ".join(f"r{i:02d}" for i in range(10))
    assert items == [f"- fine-tuning not run for 12 runs ({listed}, ... and 2 more): "
                     "`varcon finetune --checkpoint RUN`"]
    assert md.count("varcon finetune --checkpoint") == 1
    header, rows = _first_table(md)
    assert rows[0][header.index("seeds")] == ", ".join(map(str, range(12)))
    assert "fine-tune" not in header  # no run has it: listed as not run, no empty column
