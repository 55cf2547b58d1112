"""Curves of several groups of runs in one figure: convergence and tau2 side by side.

For each per-epoch metric in ``metrics.jsonl`` that some run of the report records (kNN top-1
on the test split during training, tau2's mean and spread, the loss), one panel with one line
per group: the mean over the group's runs (seeds) at each epoch, and a band from the lowest to
the highest run, so seed spread is visible beside the difference between groups. An epoch
enters a group's line only where at least one of its runs recorded it; the band needs two.
A group keeps one colour (and line style) in every panel, fixed by its place in ``groups``,
so a group that records only some metrics (tau2: VarCon only) does not change colour.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from .._atomic import atomic_path
from .figures import _matplotlib
from .runs import Run, number, read_metrics

__all__ = ["COMPARED_METRICS", "GroupCurves", "describe", "group_colors", "group_curves"]

# (metrics.jsonl key, panel title, y label)
COMPARED_METRICS: tuple[tuple[str, str, str], ...] = (
    ("val_knn_top1", "kNN top-1 on the test split during training", "kNN top-1 (%)"),
    ("tau2_mean", "mean tau2 (VarCon)", "mean tau2"),
    ("tau2_std", "spread of tau2 over samples (VarCon)", "std of tau2"),
    ("loss", "training loss", "loss"),
)


class GroupCurves:
    """What :func:`group_curves` drew: the PNG (None when nothing to draw), its panels, per
    panel and group the ``(epoch, mean, low, high, n)`` points, and per panel and group the
    colour its line was drawn in (for tests and captions)."""

    def __init__(self) -> None:
        self.path: Path | None = None
        self.panels: list[str] = []
        self.points: dict[str, dict[str, list[tuple[int, float, float, float, int]]]] = {}
        self.colors: dict[str, dict[str, str]] = {}
        self.warnings: list[str] = []


_LINE_STYLES = ("-", "--", ":", "-.")


def _group_styles(count: int, colormaps: object) -> list[tuple[str, str]]:
    """``(hex colour, line style)`` per group index: tab10 up to 10 groups, tab20 beyond, and
    past 20 the colours repeat with the next line style, so no two groups look alike."""
    from matplotlib.colors import to_hex

    cmap = colormaps["tab10" if count <= 10 else "tab20"]  # type: ignore[index]
    size = cmap.N
    return [(to_hex(cmap(i % size)), _LINE_STYLES[(i // size) % len(_LINE_STYLES)])
            for i in range(count)]


def group_colors(count: int) -> list[str]:
    """The colour of each of ``count`` groups, as :func:`group_curves` draws them (so the
    headline figure and the curves agree). Raises PlotsNotInstalledError without matplotlib."""
    _, _, colormaps = _matplotlib()
    return [color for color, _ in _group_styles(count, colormaps)]


def _series(runs: Sequence[Run], key: str, warnings: list[str]
            ) -> list[tuple[int, float, float, float, int]]:
    by_epoch: dict[int, list[float]] = {}
    for run in runs:
        metrics = run.path / "metrics.jsonl"
        if not metrics.is_file():  # e.g. a run copied without its logs: no curve, no noise
            continue
        records, problems = read_metrics(metrics)
        warnings.extend(problems)
        for record in records:
            epoch, value = number(record.get("epoch")), number(record.get(key))
            if epoch is not None and value is not None:
                by_epoch.setdefault(int(epoch), []).append(value)
    return [(e, sum(v) / len(v), min(v), max(v), len(v)) for e, v in sorted(by_epoch.items())]


def group_curves(groups: Sequence[Sequence[Run]], labels: Mapping[Path, str], path: Path,
                 metrics: Sequence[tuple[str, str, str]] = COMPARED_METRICS) -> GroupCurves:
    """Draw one panel per metric recorded by any run, one line (mean) and band (min-max) per
    group, to ``path`` (PNG). ``labels`` maps a group's first run path to its legend label.

    Raises :class:`~varcon.reporting.PlotsNotInstalledError` without matplotlib.
    """
    result = GroupCurves()
    drawn: list[tuple[str, str, dict[str, list[tuple[int, float, float, float, int]]]]] = []
    order = {labels[group[0].path]: i for i, group in enumerate(groups)}
    for key, title, ylabel in metrics:
        per_group: dict[str, list[tuple[int, float, float, float, int]]] = {}
        for group in groups:
            points = _series(group, key, result.warnings)
            if points:
                per_group[labels[group[0].path]] = points
        if per_group:
            drawn.append((title, ylabel, per_group))
            result.panels.append(key)
            result.points[key] = per_group
    if not drawn:
        return result
    figure_cls, canvas_cls, colormaps = _matplotlib()
    styles = _group_styles(len(groups), colormaps)
    cols = 2 if len(drawn) > 1 else 1
    rows = -(-len(drawn) // cols)
    fig = figure_cls(figsize=(5.6 * cols, 3.8 * rows))
    canvas_cls(fig)
    for i, (title, ylabel, per_group) in enumerate(drawn):
        ax = fig.add_subplot(rows, cols, i + 1)
        for label, points in per_group.items():
            epochs = [p[0] for p in points]
            n_max = max(p[4] for p in points)
            color, style = styles[order[label]]
            line = ax.plot(epochs, [p[1] for p in points], color=color, linestyle=style,
                           marker="." if len(points) < 60 else None,
                           label=f"{label} (n={n_max})")[0]
            result.colors.setdefault(result.panels[i], {})[label] = str(line.get_color())
            banded = [p for p in points if p[4] > 1]
            if banded:
                ax.fill_between([p[0] for p in banded], [p[2] for p in banded],
                                [p[3] for p in banded], color=line.get_color(), alpha=0.18,
                                linewidth=0)
        ax.set_title(title, fontsize="medium")
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="x-small")
    fig.suptitle("Groups side by side: mean over seeds, band = lowest to highest run")
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110)
    result.path = path
    return result


def describe(curves: GroupCurves) -> list[str]:
    """Caption lines for the report: what each panel shows and where its numbers come from."""
    return ["Training curves of every group in one figure: mean over the group's runs "
             "(seeds), shaded from the lowest to the highest run; n = runs per group.",
            "from: metrics.jsonl of every run; panels: " + ", ".join(curves.panels)]
