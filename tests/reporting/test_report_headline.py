"""The report's first screen: the headline table (at most 8 columns that fit 1280 px, best in
bold), ``--baseline`` (paired differences with 95% intervals, verdicts in words), the page's
order (headline, figures, evaluations not run, collapsible details), and group labels."""

from __future__ import annotations

import html
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from fake_runs import png_is_drawn, write_run

from varcon.reporting import build_report
from varcon.reporting.headline import MAX_HEADLINE, difference_text
from varcon.reporting.stats import paired_difference

# linear top-1 by seed: B beats A by 2.0-2.5 points on every seed; C is A plus noise
LINEAR = {"a": [90.0, 91.0, 92.0], "b": [92.5, 93.0, 94.25], "c": [91.0, 89.0, 93.5]}


class _Page(HTMLParser):
    """The headline table's cells (text and second line apart), the order of the page's
    landmarks, and the summaries of the collapsible sections."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[tuple[str, dict[str, str | None]]] = []
        self.headline: list[list[list[str]]] = []  # rows of cells of [text, sub]
        self.landmarks: list[str] = []
        self.summaries: list[str] = []
        self.in_headline = False
        self.in_cell = False
        self.in_sub = False
        self.in_summary = False
        self.in_h2 = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = dict(attrs)
        if tag == "table" and attr.get("id") == "headline":
            self.in_headline = True
            self.landmarks.append("headline table")
        elif tag == "tr" and self.in_headline:
            self.headline.append([])
        elif tag in ("td", "th") and self.in_headline:
            self.headline[-1].append(["", ""])
            self.in_cell = True
        elif tag == "span" and attr.get("class") == "sub":
            self.in_sub = True
        elif tag == "img":
            self.landmarks.append(f"img {attr.get('alt')}")
        elif tag == "details":
            self.landmarks.append("details")
        elif tag == "summary":
            self.in_summary = True
            self.summaries.append("")
        elif tag == "h2":
            self.in_h2 = True
            self.landmarks.append("h2 ")

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self.in_headline = False
        elif tag in ("td", "th"):
            self.in_cell = False
        elif tag == "span":
            self.in_sub = False
        elif tag == "summary":
            self.in_summary = False
        elif tag == "h2":
            self.in_h2 = False

    def handle_data(self, data: str) -> None:
        if self.in_headline and self.in_cell:
            self.headline[-1][-1][1 if self.in_sub else 0] += data
        if self.in_summary:
            self.summaries[-1] += data
        if self.in_h2:
            self.landmarks[-1] += data


def _parse(page: str) -> _Page:
    parser = _Page()
    parser.feed(page)
    return parser


# The headline table's width at 1280 px, estimated from its text. The page's column is 1180 px
# (body max-width); the table's font is 0.95 x 16 px, the second line 0.8 of that; a character
# is taken as 0.5 em wide (digits and Latin text average less) and each cell adds 2 x 0.7 em of
# padding and a border. Calibration, headless Chromium 156 at 1280 x 900: the `compared`
# table below is 1,087 px wide (no horizontal scroll; scrollWidth = clientWidth = 1,180), and
# this estimate gives 1,169 px for it: it errs on the wide side.
_FONT_PX = 16 * 0.95
_CHAR_PX = 0.5 * _FONT_PX
_CELL_PX = 2 * 0.7 * _FONT_PX + 1
_AVAILABLE_PX = 1180


def estimated_width(rows: list[list[list[str]]]) -> float:
    columns = max(len(r) for r in rows)
    widths = [0.0] * columns
    for row in rows:
        for i, (text, sub) in enumerate(row):
            widths[i] = max(widths[i], len(text.strip()) * _CHAR_PX,
                            len(sub.strip()) * _CHAR_PX * 0.8)
    return sum(widths) + columns * _CELL_PX


@pytest.fixture(scope="module")
def compared(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("headline")
    runs = []
    for group, method, eps in (("a", "supcon", 0.02), ("b", "varcon", 0.02),
                               ("c", "varcon", 0.0)):
        for seed, top1 in enumerate(LINEAR[group]):
            evals = ("linear", "knn", "cluster", "fewshot", "robustness", "finetune")
            runs.append(write_run(root / f"{group}-s{seed}", method=method, seed=seed,
                                  name=f"{group}-long-experiment-name-s{seed}",
                                  overrides={"loss": {"epsilon": eps}}, evals=evals,
                                  linear_top1=top1, knn_top1=80.0 + seed, arrays=False,
                                  tau2_epochs=None))
    result = build_report(runs, root / "out", figures="curves", html_images="link",
                          baseline="G1")
    return {"runs": runs, "root": root, "result": result,
            "md": result.markdown.read_text(), "html": result.html.read_text()}


def test_headline_has_at_most_8_columns_and_fits_1280_px(compared: dict[str, Any]) -> None:
    page = _parse(compared["html"])
    header = [text for text, _ in page.headline[0]]
    # linear, fine-tune, kNN, ARI, few-shot, mCA: the six headline metrics, no more
    assert header == ["group", "seeds", "linear", "fine-tune", "kNN k=20", "ARI k-means",
                      "5-way 1-shot", "mCA"]
    assert len(header) <= 2 + MAX_HEADLINE == 8
    assert [row[0][0] for row in page.headline[1:]] == [
        "G1 a-long-experiment-name", "G2 b-long-experiment-name", "G3 c-long-experiment-name"]
    assert estimated_width(page.headline) <= _AVAILABLE_PX


def test_width_estimate_flags_a_table_too_wide() -> None:
    """The check above can fail: nine columns of long cells do not fit."""
    row = [["99.99 ± 9.99 (n=2)", "+9.99 [-99.99, +99.99]"]] * 9
    assert estimated_width([row, row]) > _AVAILABLE_PX


def test_baseline_adds_paired_differences_and_verdicts(compared: dict[str, Any]) -> None:
    page = _parse(compared["html"])
    col = [text for text, _ in page.headline[0]].index("linear")
    a, b, c = (row[col] for row in page.headline[1:])
    assert a[1] == "baseline"
    for (text, sub), group in ((b, "b"), (c, "c")):
        diff = paired_difference(dict(enumerate(LINEAR[group])), dict(enumerate(LINEAR["a"])))
        assert sub == difference_text(diff, 2)
        assert text.startswith(f"{sum(LINEAR[group]) / 3:.2f} ± ")
    assert b[1].startswith("+2.25 [")  # mean of 2.5, 2.0, 2.25
    # B's best mean is bold; the sentences say which differences are more than noise
    assert "<strong>93.25 ± 0.90</strong>" in compared["html"]
    md = compared["md"].replace("\\", "")
    lines = {line.split(" (paired")[0]: line for line in md.splitlines()
             if line.startswith("- G")}
    b_line, c_line = lines["- G2 b-long-experiment-name"], lines["- G3 c-long-experiment-name"]
    diff = paired_difference(dict(enumerate(LINEAR["b"])), dict(enumerate(LINEAR["a"])))
    assert (f"(paired over seeds 0, 1, 2): higher on linear (+2.25 [{diff.low:+.2f}, "
            f"{diff.high:+.2f}], p = {diff.p_two_sided:.3f}); within noise on fine-tune, "
            "kNN k=20, ARI k-means, 5-way 1-shot, mCA.") in b_line
    # C's noisy seeds; kNN differs by the same (zero) amount on every seed: within noise
    assert c_line.endswith("within noise on linear, fine-tune, kNN k=20, ARI k-means, "
                           "5-way 1-shot, mCA.")
    # bold only where a group stands out: a column where every group ties has none
    assert "<strong>0.700 ± 0.000</strong>" not in compared["html"]


def test_page_order_and_collapsible_details(compared: dict[str, Any]) -> None:
    page = _parse(compared["html"])
    marks = page.landmarks
    order = [marks.index("headline table"), marks.index("img headline metrics by group"),
             marks.index("img training curves by group"),
             marks.index("h2 Evaluations not run"), marks.index("h2 Details"),
             marks.index("details")]
    assert order == sorted(order)
    # the comparison in words follows the figure: table and figure make the first screen
    assert order[1] < marks.index("h2 Against the baseline G1 a-long-experiment-name") < order[2]
    assert page.summaries[:4] == ["All metrics by group", "Per-run values",
                                  "Groups and their settings", "Evaluation settings"]
    # figures="curves": no per-run figures, so no such section
    assert "Figures of each run" not in page.summaries
    # one line per evaluation kind not run: transfer, for all nine runs
    md = compared["md"]
    section = md[md.index("## Evaluations not run"):md.index("## Details")]
    assert [line for line in section.splitlines() if line.startswith("- ")] == [
        "- transfer not run for 9 runs (a-s0, a-s1, a-s2, b-s0, b-s1, b-s2, c-s0, c-s1, "
        "c-s2): `varcon transfer --checkpoint RUN data.dataset=... data.root=...`"]
    headline_png = compared["root"] / "out" / "figures" / "headline.png"
    png_is_drawn(headline_png)
    assert 'src="figures/headline.png"' in compared["html"]
    # Markdown: the same sections, collapsible on GitHub
    assert md.count("<details>") == md.count("</details>") == 4
    assert "<summary>Per-run values</summary>" in md


@pytest.mark.parametrize("name", ["G2", "G2 b-long-experiment-name", "b-long-experiment-name"])
def test_baseline_by_label_number_or_name(compared: dict[str, Any], tmp_path: Path,
                                          name: str) -> None:
    md = build_report(compared["runs"], tmp_path, figures="none",
                      baseline=name).markdown.read_text()
    assert "## Against the baseline G2 b-long-experiment-name" in md


def test_baseline_naming_no_group_is_an_error_that_lists_them(
        compared: dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"names no group.*'G1 a-long-experiment-name'.*G1"):
        build_report(compared["runs"], tmp_path / "x", figures="none", baseline="simclr")
    # "varcon" is the method of two groups: ambiguous, so also an error
    with pytest.raises(ValueError, match="names no group"):
        build_report(compared["runs"], tmp_path / "x", figures="none", baseline="varcon")
    assert not (tmp_path / "x").exists()  # nothing written
    # by its method where one group has it
    md = build_report(compared["runs"], tmp_path / "y", figures="none",
                      baseline="supcon").markdown.read_text()
    assert "## Against the baseline G1 a-long-experiment-name" in md


def test_cli_baseline(compared: dict[str, Any], tmp_path: Path) -> None:
    bad = subprocess.run([sys.executable, "-m", "varcon", "report", *map(str, compared["runs"]),
                          "--output", str(tmp_path / "r"), "--figures", "none",
                          "--baseline", "nope"], capture_output=True, text=True)
    assert bad.returncode == 2
    assert "error: --baseline 'nope' names no group" in bad.stderr


def test_single_groups_and_missing_values_are_not_bold(tmp_path: Path) -> None:
    run = write_run(tmp_path / "only-s0", evals=("linear",), arrays=False, tau2_epochs=None)
    page = build_report([run], tmp_path / "out", figures="none").html.read_text()
    assert "<strong>" not in page.split('id="headline"')[1].split("</table>")[0]
    assert "G1 varcon" in html.unescape(page)  # its name varcon-s0 without the seed


def test_no_results_yet_says_so(tmp_path: Path) -> None:
    run = write_run(tmp_path / "new-s0", evals=(), arrays=False, tau2_epochs=None)
    md = build_report([run], tmp_path / "out", figures="none").markdown.read_text()
    assert "No evaluation results yet" in md and "| group | seeds |" not in md
    assert "varcon linear --checkpoint" in md
