"""The report's first screen: which group wins, by how much, with what spread.

* :func:`pick_headline`: at most :data:`MAX_HEADLINE` metrics, one per evaluation protocol
  (linear probe, fine-tuning, kNN, clustering ARI, few-shot, mean corruption accuracy, ...):
  each protocol's first column marked ``headline`` (:class:`~varcon.evaluation.registry.
  ReportColumn`) that some run has.
* :func:`headline_table`: one row per group, ``group | seeds | metric ...`` (at most 8
  columns): ``mean ± sample std`` over the group's seeds, the best mean of each metric in bold;
  with a baseline group, a second line per cell with the paired difference against it and its
  95% interval (:func:`varcon.reporting.stats.paired_difference`).
* :func:`headline_figure`: one panel per metric, every seed a dot and the mean ± std a bar,
  groups in the colours of the training-curve figure.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from .._atomic import atomic_path
from . import render
from .render import fmt_number, fmt_signed
from .stats import PairedDifference, paired_difference

__all__ = ["MAX_HEADLINE", "GroupValues", "HeadlineMetric", "comparison_lines",
           "headline_figure", "headline_table", "pick_headline"]

MAX_HEADLINE = 6  # metric columns: with group and seeds, 8 columns fit 1280 px


@dataclass(frozen=True)
class HeadlineMetric:
    """``key``: of :func:`~varcon.reporting.run_metrics`; ``name``: the short header;
    ``label``: the full name; ``better``: ``"higher"`` or ``"lower"``."""

    key: str
    name: str
    label: str
    decimals: int
    better: str = "higher"


@dataclass(frozen=True)
class GroupValues:
    """A group as the headline sees it: its short label, and each run's seed and values."""

    label: str
    runs: tuple[tuple[Any, Mapping[str, float]], ...]

    def values(self, key: str) -> list[float]:
        return [v[key] for _, v in self.runs if key in v]

    def by_seed(self, key: str) -> dict[int, float]:
        """Value by seed, for pairing; a run without an integer seed is left out."""
        return {int(s): v[key] for s, v in self.runs
                if key in v and isinstance(s, int) and not isinstance(s, bool)}


class ColumnLike(Protocol):
    """The fields of the report's columns that :func:`pick_headline` reads."""

    @property
    def key(self) -> str: ...
    @property
    def label(self) -> str: ...
    @property
    def eval_key(self) -> str: ...
    @property
    def decimals(self) -> int: ...
    @property
    def headline(self) -> str: ...
    @property
    def better(self) -> str: ...


def pick_headline(columns: Sequence[ColumnLike], limit: int = MAX_HEADLINE) -> list[HeadlineMetric]:
    """The first ``headline`` column of each protocol, in the columns' (report) order, at most
    ``limit``. ``columns``: the report's columns (key, label, eval_key, decimals, headline,
    better), sorted, holding only values some run has."""
    picked: dict[str, HeadlineMetric] = {}
    for col in columns:
        protocol = col.eval_key.split(":")[0]
        if col.headline and protocol not in picked:
            picked[protocol] = HeadlineMetric(col.key, col.headline, col.label, col.decimals,
                                              col.better)
    return list(picked.values())[:limit]


def _summary(values: list[float], decimals: int) -> str:
    mean = fmt_number(statistics.fmean(values), decimals)
    return f"{mean} ± {fmt_number(statistics.stdev(values), decimals)}" if len(values) > 1 else mean


def _best(groups: Sequence[GroupValues], metric: HeadlineMetric) -> set[int]:
    """Indices of the groups whose mean (rounded as shown) is the best; none when fewer than
    two groups have the metric or all of them tie (bold would single nothing out)."""
    means = {i: round(statistics.fmean(v), metric.decimals)
             for i, g in enumerate(groups) if (v := g.values(metric.key))}
    if len(means) < 2 or len(set(means.values())) == 1:
        return set()
    best = max(means.values()) if metric.better == "higher" else min(means.values())
    return {i for i, m in means.items() if m == best}


def difference_text(diff: PairedDifference, decimals: int) -> str:
    """``+2.64 [+1.10, +4.18]``; ``+2.64 (1 seed)`` / ``no paired seeds`` below 2 seeds."""
    if diff.n == 0:
        return "no paired seeds"
    if diff.n < 2:
        return f"{fmt_signed(diff.mean, decimals)} (1 seed)"
    return (f"{fmt_signed(diff.mean, decimals)} "
            f"[{fmt_signed(diff.low, decimals)}, {fmt_signed(diff.high, decimals)}]")


def headline_table(groups: Sequence[GroupValues], metrics: Sequence[HeadlineMetric],
                   baseline: int | None = None) -> render.Table:
    """``group | seeds | metric ...``; see the module docstring. ``baseline``: the index of
    the group the others are compared with (its cells say "baseline")."""
    best = {m.key: _best(groups, m) for m in metrics}
    rows: list[list[str | render.Cell]] = []
    for i, group in enumerate(groups):
        seeds = [s for s, _ in group.runs]
        row: list[str | render.Cell] = [group.label, ", ".join(str(s) for s in seeds)]
        for m in metrics:
            values = group.values(m.key)
            if not values:
                row.append(render.Cell("not run"))
                continue
            text = _summary(values, m.decimals)
            if len(values) < len(group.runs):
                text += f" (n={len(values)})"
            sub = ""
            if baseline is not None:
                sub = ("baseline" if i == baseline else
                       difference_text(paired_difference(group.by_seed(m.key),
                                                         groups[baseline].by_seed(m.key)),
                                       m.decimals)
                       if groups[baseline].values(m.key) else "")
            row.append(render.Cell(text, bold=i in best[m.key], sub=sub))
        rows.append(row)
    return render.Table(["group", "seeds", *(m.name for m in metrics)], rows, id="headline")


def comparison_lines(groups: Sequence[GroupValues], metrics: Sequence[HeadlineMetric],
                     baseline: int) -> list[tuple[str, str | None]]:
    """One sentence per group: the metrics on which it is higher or lower than the baseline
    (paired difference, 95% interval, two-sided p), then those within noise, then those that
    cannot be compared (fewer than 2 seeds both groups have)."""
    base = groups[baseline]
    lines: list[tuple[str, str | None]] = []
    for i, group in enumerate(groups):
        if i == baseline:
            continue
        found: dict[str, list[str]] = {"higher": [], "lower": [], "within noise": [],
                                       "too few seeds": []}
        seeds: set[int] = set()
        for m in metrics:
            if not group.values(m.key) or not base.values(m.key):
                continue
            diff = paired_difference(group.by_seed(m.key), base.by_seed(m.key))
            if diff.direction in ("higher", "lower"):
                found[diff.direction].append(
                    f"{m.name} ({fmt_signed(diff.mean, m.decimals)} "
                    f"[{fmt_signed(diff.low, m.decimals)}, {fmt_signed(diff.high, m.decimals)}], "
                    f"p = {diff.p_two_sided:.3f})")
            else:
                found[diff.direction].append(m.name)
            seeds.update(diff.seeds)
        parts = [f"{word} on {', '.join(found[word])}" for word in ("higher", "lower")
                 if found[word]]
        if found["within noise"]:
            parts.append(f"within noise on {', '.join(found['within noise'])}")
        if found["too few seeds"]:
            parts.append(f"not compared on {', '.join(found['too few seeds'])} (needs 2+ "
                         "seeds both groups have)")
        paired = f" (paired over seeds {', '.join(map(str, sorted(seeds)))})" if seeds else ""
        lines.append((f"{group.label}{paired}: " + ("; ".join(parts) or "no metric in common")
                      + ".", None))
    return lines


def headline_figure(groups: Sequence[GroupValues], metrics: Sequence[HeadlineMetric],
                    colors: Sequence[str], path: Path) -> Path | None:
    """Draw the headline metrics (see the module docstring) to ``path``; ``colors``: one per
    group. None (nothing written) when no group has a metric.

    Raises :class:`~varcon.reporting.PlotsNotInstalledError` without matplotlib.
    """
    from .figures import _matplotlib

    drawn = [m for m in metrics if any(g.values(m.key) for g in groups)]
    if not drawn:
        return None
    figure_cls, canvas_cls, _ = _matplotlib()
    cols = min(3, len(drawn))
    rows = -(-len(drawn) // cols)
    width = max(3.6, 0.55 * len(groups) + 1.8)
    fig = figure_cls(figsize=(width * cols, 2.8 * rows))
    canvas_cls(fig)
    for p, metric in enumerate(drawn):
        ax = fig.add_subplot(rows, cols, p + 1)
        for i, group in enumerate(groups):
            values = group.values(metric.key)
            if not values:
                continue
            # every seed a dot, spread sideways so equal values stay visible
            offsets = ([0.0] if len(values) == 1 else
                       [-0.15 + 0.3 * j / (len(values) - 1) for j in range(len(values))])
            ax.scatter([i + o for o in offsets], values, s=18, color=colors[i], alpha=0.75,
                       zorder=3)
            mean = statistics.fmean(values)
            std = statistics.stdev(values) if len(values) > 1 else 0.0
            ax.errorbar([i], [mean], yerr=[std] if std else None, fmt="_", markersize=22,
                        color="black", capsize=4, linewidth=1.2, zorder=4)
        ax.set_xticks(range(len(groups)), [g.label for g in groups],
                      rotation=30 if len(groups) > 3 else 0,
                      ha="right" if len(groups) > 3 else "center", fontsize="small")
        ax.set_xlim(-0.6, len(groups) - 0.4)
        ax.set_title(metric.label, fontsize="medium")
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("Each dot one seed; black: mean ± sample std over the group's seeds",
                 fontsize="medium")
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110)
    return path
