"""Multi-run report (``varcon report RUN_DIR [RUN_DIR ...] --output DIR``).

Runs whose configs differ only in ``seed`` and bookkeeping keys (:data:`IGNORED_CONFIG_KEYS`)
form a group; the first table has one row per group with mean ± sample std over its runs. An
evaluation a run lacks is shown as "not run", and the command that produces it is listed under
the table, one line per evaluation naming the runs that lack it (``--checkpoint RUN`` for
each). ``report.md`` references figure PNGs copied to ``DIR/figures/<run>/``; ``report.html``
is self-contained (PNGs inlined) unless ``html_images="link"``, where it refers to the same
files. A directory that is not a run is named in
:attr:`ReportResult.problems` and skipped; the rest is still reported.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from varcon._text import shorten
from varcon.evaluation.registry import get_protocol

from . import render
from .figures import MANIFEST_NAME, PlotsNotInstalledError, make_figures, read_manifest
from .render import fmt_number
from .runs import (
    IGNORED_CONFIG_KEYS,
    NotARunError,
    Run,
    atomic_write_bytes,
    atomic_write_text,
    flatten_config,
    load_run,
    number,
    report_protocols,
)

__all__ = ["ReportResult", "build_report", "evaluation_command", "group_runs", "run_metrics"]

NOT_RUN = "not run"
NOT_REPORTED = "–"  # the evaluation ran but did not report this value
_UNSET = "(unset)"
_RUN = "RUN"  # the run directory in a command shared by several runs


@dataclass(frozen=True)
class ReportResult:
    """Paths of the written report and what was wrong with the inputs.

    ``problems``: directories that are not runs, unreadable config or eval files (a CLI should
    exit non-zero when this is non-empty). ``warnings``: figures that could not be drawn.
    ``runs``: the run directories included, in the order given.
    """

    markdown: Path
    html: Path
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    runs: list[Path] = field(default_factory=list)


# ----------------------------------------------------------------------------- commands


def evaluation_command(protocol: str, run_dir: str | os.PathLike[str],
                       target: str | None = None) -> str:
    """The command that writes ``protocol``'s eval JSON for ``run_dir`` (``target``: of a
    protocol with one file per target, e.g. transfer's dataset)."""
    return get_protocol(protocol).command(str(run_dir), target)


def checkpoint_folder(run: Run) -> Path:
    """The folder whose checkpoint evaluates ``run``: its own when it holds
    ``checkpoints/last.pt`` (or ``last.pt``); else, for results copied without checkpoints,
    the folder it was trained in (``output_dir`` of its config) when that differs; else its own.
    """
    # the models' own lookup rule, so the report and the evaluation commands agree on it
    from varcon.runtime.checkpoint import CheckpointError, find_checkpoint

    try:
        find_checkpoint(run.path)
        return run.path
    except CheckpointError:
        pass
    trained_in = run.config.get("output_dir")
    if isinstance(trained_in, str) and trained_in:
        folder = Path(trained_in)
        if folder.resolve() != run.path.resolve():
            return folder
    return run.path


# ----------------------------------------------------------------------------- columns


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    eval_key: str  # Run.evals key whose absence means "not run" ("transfer" = any target)
    decimals: int
    main: bool
    order: tuple[Any, ...]
    headline: str = ""
    better: str = "higher"


def _run_values(run: Run) -> dict[Column, float]:
    """Every number a run's eval JSONs report, keyed by the column it belongs to: each
    registered protocol's columns (``ProtocolSpec.report_values``), in report order."""
    values: dict[Column, float] = {}
    for rank, spec in enumerate(report_protocols()):
        keys = (sorted(k for k in run.evals if k.startswith(f"{spec.name}:")) if spec.per_target
                else [spec.name] if spec.name in run.evals else [])
        for key in keys:
            target = key.split(":", 1)[1] if spec.per_target else None
            for col in spec.report_values(run.evals[key]["results"], target):
                value = number(col.value)
                if value is not None:
                    values[Column(col.key, col.label, key, col.decimals, col.main,
                                  (spec.report_order, rank, *col.order), col.headline,
                                  col.better)] = value
    return values


def run_metrics(run: Run) -> dict[str, float]:
    """Every number a run's evaluation files report, by key: the values of the report's tables.

    Keys: ``linear.top1``, ``knn.top1.<k>``, ``cluster.<algorithm>.<ari|nmi|ami|purity>``,
    ``fewshot.<n>w<k>s.<ncm|logreg>`` (and ``.ci95``), ``transfer.<target>.top1``,
    ``robustness.mca`` / ``relative_mce`` / ``<corruption>``, ... Accuracies are in %.
    """
    return {col.key: value for col, value in _run_values(run).items()}


def _columns(values: list[dict[Column, float]]) -> list[Column]:
    """Union of the runs' columns, plus one "not run" column per evaluation no run has."""
    seen: dict[str, Column] = {}
    for run_values in values:
        for col in run_values:
            seen.setdefault(col.key, col)
    present = {c.eval_key.split(":")[0] for c in seen.values()}
    for rank, spec in enumerate(report_protocols()):
        if spec.name not in present:
            seen[f"{spec.name}.none"] = Column(f"{spec.name}.none", spec.display_name,
                                               spec.name, 2, True, (spec.report_order, rank))
    return sorted(seen.values(), key=_sort_key)


def _sort_key(col: Column) -> tuple[Any, ...]:
    # Mixed int/str members of ``order`` are made comparable by tagging each with its type.
    return tuple((0, x, "") if isinstance(x, (int, float)) else (1, 0, str(x)) for x in col.order)


def _has_eval(run: Run, eval_key: str) -> bool:
    """Whether ``run`` has the results of ``eval_key``; a per-target protocol's name (e.g.
    ``transfer``) stands for any of its targets."""
    return eval_key in run.evals or any(k.startswith(f"{eval_key}:") for k in run.evals)


# ----------------------------------------------------------------------------- grouping


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _defaults() -> dict[str, Any]:
    """Today's default config, flattened: a key added after a run was made has, for that
    run, the value it behaved with (the default), so older runs still group with new ones."""
    from varcon.runtime.config import Config, config_to_dict

    return flatten_config(config_to_dict(Config()))


def _flat(run: Run) -> dict[str, Any]:
    return {**_defaults(), **flatten_config(run.config)}


def group_runs(runs: Sequence[Run]) -> tuple[list[list[Run]], list[str]]:
    """Group runs whose flattened configs agree on every key outside
    :data:`IGNORED_CONFIG_KEYS`; also return the keys (other than ``method`` and the ignored
    ones) whose values differ between runs, in config order. Groups keep first-seen order."""
    flats = [_flat(r) for r in runs]
    groups: dict[str, list[Run]] = {}
    for run, flat in zip(runs, flats, strict=True):
        key = _canon(sorted((k, _canon(v)) for k, v in flat.items()
                            if k not in IGNORED_CONFIG_KEYS))
        groups.setdefault(key, []).append(run)
    keys: list[str] = []
    for flat in flats:
        keys.extend(k for k in flat if k not in keys)
    differing = [k for k in keys if k not in IGNORED_CONFIG_KEYS and k != "method"
                 and len({_canon(f.get(k, _UNSET)) for f in flats}) > 1]
    return list(groups.values()), differing


def _config_value(run: Run, key: str) -> str:
    flat = _flat(run)
    if key not in flat:
        return _UNSET
    value = flat[key]
    if value is None:
        return "null"
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


# ----------------------------------------------------------------------------- formatting


def _mean_std(values: list[float], decimals: int) -> str:
    """``mean ± sample std``; std is "–" for a single value."""
    mean = statistics.fmean(values)
    std = fmt_number(statistics.stdev(values), decimals) if len(values) > 1 else "–"
    return f"{fmt_number(mean, decimals)} ± {std}"


def _group_cell(group: list[Run], values: dict[Path, dict[str, float]], col: Column) -> str:
    found = [values[r.path][col.key] for r in group if col.key in values[r.path]]
    if found:
        cell = _mean_std(found, col.decimals)
        return cell if len(found) == len(group) else f"{cell} (n={len(found)})"
    if not any(_has_eval(r, col.eval_key) for r in group):
        return NOT_RUN
    return NOT_REPORTED


def _run_cell(run: Run, values: dict[str, float], col: Column) -> str:
    if col.key in values:
        return fmt_number(values[col.key], col.decimals)
    return NOT_RUN if not _has_eval(run, col.eval_key) else NOT_REPORTED


def _display_names(paths: list[Path]) -> list[str]:
    """Short unique names: the directory name, with parents added where names collide."""
    resolved = [p.resolve() for p in paths]
    depth = 1
    while True:
        names = ["/".join(r.parts[-depth:]) for r in resolved]
        if len(set(names)) == len(names) or depth > max(len(r.parts) for r in resolved):
            break
        depth += 1
    seen: dict[str, int] = {}
    unique = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        unique.append(name if seen[name] == 1 else f"{name} ({seen[name]})")
    return unique


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "run"


_SEED_SUFFIX = re.compile(r"([-_.]?(?:s|seed)[-_]?\d+)$")
MAX_LABEL = 28  # characters of a group's label in the headline table and figure


def _common_name(names: list[str]) -> str:
    """``varcon`` for ``varcon-s0``, ``varcon-s1``: the names without their seed suffix when
    that makes them one; else the first name with ``+k`` for the others."""
    stems = {_SEED_SUFFIX.sub("", n) or n for n in names}
    return stems.pop() if len(stems) == 1 else f"{names[0]} +{len(names) - 1}"


def _group_labels(groups: list[list[Run]], names: dict[Path, str]) -> list[str]:
    """``G<i> <name>`` per group: the common name of its runs' config names, or of their
    directories' names where two groups would otherwise read alike (a run copied under a new
    folder name keeps its config's name); at most :data:`MAX_LABEL` characters (the G-number
    keeps labels unique)."""
    by_config = [_common_name([str(r.config.get("name") or names[r.path]) for r in g])
                 for g in groups]
    by_folder = [_common_name([r.path.name for r in g]) for g in groups]
    labels = []
    for i, name in enumerate(by_config):
        folder = by_folder[i]
        if by_config.count(name) > 1 and by_folder.count(folder) == 1 and " +" not in folder:
            name = folder
        label = f"G{i + 1} {name}"
        labels.append(label if len(label) <= MAX_LABEL else label[:MAX_LABEL - 1] + "…")
    return labels


def _find_baseline(baseline: str, labels: list[str], groups: list[list[Run]]) -> int:
    """The index of the group ``baseline`` names: its label (``G2 supcon``), its number
    (``G2``), its name (``supcon``) or its method when one group has it."""
    wanted = baseline.strip()
    for i, label in enumerate(labels):
        number, _, name = label.partition(" ")
        if wanted in (label, number, name):
            return i
    by_method = [i for i, g in enumerate(groups) if g[0].method == wanted]
    if len(by_method) == 1:
        return by_method[0]
    choices = ", ".join(repr(label) for label in labels)
    raise ValueError(f"--baseline {baseline!r} names no group of this report; give one of "
                     f"{choices} (or just its G-number, e.g. 'G1')")


def _short_json(value: Any, limit: int = 300) -> str:
    text = json.dumps(value, sort_keys=True, default=str) if not isinstance(value, str) else value
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ----------------------------------------------------------------------------- figures


_FIGURE_INPUTS = ("metrics.jsonl", "tau2", "eval")


def _newest_input(run_dir: Path) -> float:
    newest = 0.0
    for name in _FIGURE_INPUTS:
        path = run_dir / name
        if path.is_file():
            newest = max(newest, path.stat().st_mtime)
        elif path.is_dir():
            newest = max([newest, *(p.stat().st_mtime for p in path.iterdir() if p.is_file())])
    return newest


def _run_figures(run: Run, name: str, folder: str, output_dir: Path, warnings: list[str]
                 ) -> tuple[Path, dict[str, Any] | None]:
    """The figures of ``run`` (drawing them when absent or older than their inputs), copied to
    ``output_dir/figures/<folder>/``; returns that folder and the figures manifest."""
    dest = output_dir / "figures" / folder
    source = run.path / "figures"
    manifest = read_manifest(source)
    fresh = (manifest is not None
             and (source / MANIFEST_NAME).stat().st_mtime >= _newest_input(run.path))
    if not fresh:
        try:
            try:
                make_figures(run.path)
            except OSError:  # a read-only run directory: draw straight into the report folder
                make_figures(run.path, dest)
                source = dest
            manifest = read_manifest(source)
        except PlotsNotInstalledError as exc:
            warnings.append(f"{name}: figures not drawn ({exc})")
    if manifest is None:
        return dest, None
    warnings.extend(f"{name}: {w}" for w in manifest.get("warnings") or [])
    dest.mkdir(parents=True, exist_ok=True)
    kept = []
    for record in manifest["figures"]:
        file = str(record.get("file", ""))
        src = source / file
        if not file or Path(file).name != file or not src.is_file():
            continue
        if src.resolve() != (dest / file).resolve():
            atomic_write_bytes(dest / file, src.read_bytes())
        kept.append(record)
    manifest = {**manifest, "figures": kept}
    return dest, manifest


def _figure_blocks(run: Run, name: str, label: str, dest: Path, manifest: dict[str, Any] | None,
                   output_dir: Path) -> list[render.Block]:
    blocks: list[render.Block] = [render.Heading(3, f"{name} ({label})")]
    loss, optim, data, model = (section if isinstance(section := run.config.get(key), dict)
                                else {} for key in ("loss", "optim", "data", "model"))
    blocks.append(render.Para(
        f"Run {run.path}: method {run.method}, seed {run.seed}, dataset {data.get('dataset')}, "
        f"encoder {model.get('encoder')}, τ1 = {loss.get('temperature')}, "
        f"ε = {loss.get('epsilon')}, epochs {optim.get('epochs')}, "
        f"batch {optim.get('batch_size')}, lr {optim.get('lr')}.", note=True))
    if manifest is None or not manifest["figures"]:
        blocks.append(render.Para("No figures: their inputs are absent (see the figure "
                                  "notes below) or matplotlib is not installed.", note=True))
    for record in (manifest or {}).get("figures", []):
        path = dest / record["file"]
        settings = record.get("settings") or {}
        caption = [str(record.get("title", record["file"])), str(record.get("description", "")),
                   "from: " + ", ".join(str(s) for s in record.get("sources", []))]
        if settings:
            caption.append("settings: " + "; ".join(f"{k} = {_short_json(v)}"
                                                    for k, v in settings.items()))
        blocks.append(render.Image(path=path.relative_to(output_dir).as_posix(),
                                   data=path.read_bytes(), alt=str(record.get("title", "")),
                                   caption=caption))
    skipped = (manifest or {}).get("skipped") or []
    if skipped:
        blocks.append(render.Para("Figures not drawn (input absent):", note=True))
        blocks.append(render.Items([(str(s), None) for s in skipped]))
    return blocks


def _group_curve_blocks(groups: list[list[Run]], labels: dict[Path, str], output_dir: Path,
                        warnings: list[str]) -> list[render.Block]:
    """The groups' training curves in one figure (convergence, tau2), when two or more groups
    or runs record per-epoch metrics; nothing (and a warning) without matplotlib."""
    from .compare import describe, group_curves
    from .figures import PlotsNotInstalledError

    if sum(len(g) for g in groups) < 2:
        return []
    try:
        curves = group_curves(groups, labels, output_dir / "figures" / "group_curves.png")
    except PlotsNotInstalledError as exc:
        warnings.append(f"group curves not drawn: {exc}")
        return []
    warnings.extend(curves.warnings)
    if curves.path is None:
        return []
    return [render.Heading(2, "Training curves by group"),
            render.Image(path=curves.path.relative_to(output_dir).as_posix(),
                         data=curves.path.read_bytes(), alt="training curves by group",
                         caption=describe(curves))]


# ----------------------------------------------------------------------------- report


def _load_runs(run_dirs: Sequence[str | os.PathLike[str]]) -> tuple[list[Run], list[str]]:
    runs: list[Run] = []
    problems: list[str] = []
    seen: set[Path] = set()
    for entry in run_dirs:
        path = Path(entry)
        if path.resolve() in seen:
            problems.append(f"{path}: given twice; counted once")
            continue
        try:
            run = load_run(path)
        except NotARunError as exc:
            problems.append(f"{exc} (skipped)")
            continue
        seen.add(path.resolve())
        runs.append(run)
        problems.extend(run.problems)
    return runs, problems


def _missing_evaluations(runs: list[Run], names: dict[Path, str]
                         ) -> tuple[list[tuple[str, str | None]], bool, bool]:
    """One line per evaluation (and per transfer target some run has): the runs that lack it
    and its command, for RUN each of them (one run: its own command). Also whether a command
    holds the RUN placeholder, and whether a RUN is the folder a run was trained in."""
    specs = report_protocols()
    targets = {spec.name: sorted({k.split(":", 1)[1] for r in runs for k in r.evals
                                  if k.startswith(f"{spec.name}:")})
               for spec in specs if spec.per_target}
    sources = {run.path: checkpoint_folder(run) for run in runs}
    missing: list[tuple[str, str | None]] = []
    placeholder = elsewhere = False
    for spec in specs:
        choices: list[str | None] = ([*targets[spec.name]] or [None]) if spec.per_target \
            else [None]
        for target in choices:
            key = f"{spec.name}:{target}" if target else spec.name
            lacking = [r for r in runs if key not in r.evals]
            if not lacking:
                continue
            what = f"{spec.display_name} to {target}" if target else spec.display_name
            moved = {r.path for r in lacking if sources[r.path] != r.path}
            elsewhere |= bool(moved)
            if len(lacking) == 1:
                run = lacking[0]
                missing.append((f"{what} {NOT_RUN} for {names[run.path]}:",
                                spec.command(str(sources[run.path]), target)))
                continue
            placeholder = True
            listed = shorten(names[r.path] + (f" (RUN = {sources[r.path]})" if r.path in moved
                                              else "") for r in lacking)
            missing.append((f"{what} {NOT_RUN} for {len(lacking)} runs ({listed}):",
                            spec.command(_RUN, target)))
    return missing, placeholder, elsewhere


def _settings_rows(runs: list[Run], names: dict[Path, str]) -> list[list[str]]:
    rows = []
    for run in runs:
        for key, env in run.evals.items():
            class_names = env.get("class_names")
            if isinstance(class_names, list):
                shown = ", ".join(str(n) for n in class_names[:12])
                classes = shown + (f", … ({len(class_names)} classes)"
                                   if len(class_names) > 12 else "")
            else:
                classes = "–"
            file = run.eval_files[key]
            rel = file.relative_to(run.path) if file.is_relative_to(run.path) else file
            rows.append([names[run.path], key, rel.as_posix(), str(env.get("features", "–")),
                         str(env.get("eval_dataset", "–")), classes,
                         _short_json(env.get("settings", {})),
                         str(env.get("checkpoint", "–")), str(env.get("created", "–")),
                         str(env.get("seconds", "–"))])
    return rows


def _headline_blocks(groups: list[list[Run]], labels: dict[Path, str], columns: list[Column],
                     values: dict[Path, dict[str, float]], differing: list[str],
                     baseline: int | None, output_dir: Path, figures: str,
                     warnings: list[str]) -> list[render.Block]:
    """The first screen: the headline table, the groups' settings in one line each, the
    headline figure, then the comparison with the baseline in words."""
    from .compare import group_colors
    from .figures import PlotsNotInstalledError
    from .headline import (
        GroupValues,
        comparison_lines,
        headline_figure,
        headline_table,
        pick_headline,
    )

    present = [c for c in columns if not c.key.endswith(".none")]
    metrics = pick_headline(present)
    data = [GroupValues(labels[g[0].path], tuple((r.seed, values[r.path]) for r in g))
            for g in groups]
    blocks: list[render.Block] = []
    if not metrics:
        blocks.append(render.Para("No evaluation results yet: the commands that produce them "
                                  "are listed under \"Evaluations not run\"."))
    else:
        blocks.append(headline_table(data, metrics, baseline))
        names = "; ".join(f"{m.name}: {m.label}" for m in metrics)
        blocks.append(render.Para(
            f"Mean ± sample standard deviation over each group's seeds; the best mean of each "
            f"column in bold. {names}. Accuracies in %, ARI as a fraction.", note=True))
        if baseline is not None:
            base = data[baseline].label
            blocks.append(render.Para(
                f"Second line: the difference from the baseline {base}, paired by seed, with "
                "its 95% interval (t distribution over the seeds both groups have).",
                note=True))
    described = []
    for group in groups:
        settings = ", ".join(f"{k} = {_config_value(group[0], k)}" for k in differing)
        described.append((f"{labels[group[0].path]}: method {group[0].method}"
                          + (f", {settings}" if settings else "")
                          + f"; {len(group)} run{'s' if len(group) > 1 else ''}", None))
    blocks.append(render.Items(described))
    if metrics and figures != "none":
        try:
            path = headline_figure(data, metrics, group_colors(len(groups)),
                                   output_dir / "figures" / "headline.png")
        except PlotsNotInstalledError as exc:
            warnings.append(f"headline figure not drawn: {exc}")
            path = None
        if path is not None:
            blocks.append(render.Image(
                path=path.relative_to(output_dir).as_posix(), data=path.read_bytes(),
                alt="headline metrics by group",
                caption=["The headline metrics, every seed shown",
                         "each dot one run (seed); black bar: the group's mean ± sample std; "
                         "from: the eval/*.json files of every run"]))
    if metrics and baseline is not None:
        blocks.append(render.Heading(2, f"Against the baseline {data[baseline].label}"))
        blocks.append(render.Items(comparison_lines(data, metrics, baseline)))
        blocks.append(render.Para(
            "Higher or lower: the 95% interval of the paired difference excludes 0 (two-sided "
            "p < 0.05, t-test over seeds); with 2-3 seeds only a large and consistent "
            "difference passes.", note=True))
    return blocks


def build_report(run_dirs: Sequence[str | os.PathLike[str]], output_dir: str | os.PathLike[str],
                 *, figures: Literal["groups", "all", "curves", "none"] = "groups",
                 html_images: Literal["inline", "link"] = "inline",
                 baseline: str | None = None) -> ReportResult:
    """Write ``output_dir/report.md`` and ``output_dir/report.html`` comparing ``run_dirs``.

    The page opens with the headline table (at most 8 columns: group, seeds and one metric per
    evaluation, best in bold) and the headline figure (every seed a dot); ``baseline`` (a
    group's label, G-number, name or method) adds each group's paired difference from that
    group with its 95% interval, and the verdicts in words. Then the groups' training curves,
    the evaluations not run (one line per kind, with its command), and the details in
    collapsible sections (all metrics, per-run values, settings, each run's figures).

    ``figures``: the groups' training curves and the figures of the first run of each group
    (default), of every run, only the groups' curves (``"curves"``), or none (no headline
    figure either). ``html_images``: inline the PNGs in the HTML (one self-contained file) or
    link them. Figures are drawn with :func:`make_figures` where a run has none (or older ones
    than its inputs). Nothing here exits the process: the caller decides what ``problems``
    mean; a ``baseline`` that names no group raises ``ValueError`` before anything is written.
    """
    if figures not in ("groups", "all", "curves", "none"):
        raise ValueError(f"figures={figures!r}; expected 'groups', 'all', 'curves' or 'none'")
    if html_images not in ("inline", "link"):
        raise ValueError(f"html_images={html_images!r}; expected 'inline' or 'link'")
    runs, problems = _load_runs(run_dirs)
    names = dict(zip([r.path for r in runs], _display_names([r.path for r in runs]),
                     strict=True))
    groups, differing = group_runs(runs)
    labels = {run.path: label for group, label in zip(groups, _group_labels(groups, names),
                                                       strict=True) for run in group}
    base = (None if baseline is None else
            _find_baseline(baseline, [labels[g[0].path] for g in groups], groups))
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    warnings: list[str] = []
    by_col = {r.path: _run_values(r) for r in runs}
    columns = _columns(list(by_col.values()))
    values = {path: {c.key: v for c, v in cols.items()} for path, cols in by_col.items()}

    blocks: list[render.Block] = [render.Heading(1, "VarCon runs report")]
    blocks.append(render.Para(
        f"{len(runs)} runs in {len(groups)} groups: runs whose configs differ only in the seed "
        "(and bookkeeping settings) form a group."))
    if runs:
        blocks += _headline_blocks(groups, labels, columns, values, differing, base, out,
                                   figures, warnings)
    else:
        blocks.append(render.Para("No run could be read; see the problems below."))
    if problems:
        blocks.append(render.Heading(2, "Problems"))
        blocks.append(render.Items([(p, None) for p in problems]))

    if runs and figures != "none":
        blocks.extend(_group_curve_blocks(groups, labels, out, warnings))

    missing, placeholder, elsewhere = _missing_evaluations(runs, names)
    if missing:
        blocks.append(render.Heading(2, "Evaluations not run"))
        blocks.append(render.Items(missing))
        if placeholder:
            blocks.append(render.Para(
                f"{_RUN} in a command stands for each listed run's directory (see the groups "
                "under Details).", note=True))
        if elsewhere:
            blocks.append(render.Para(
                "Some of these folders hold results without a checkpoint (copied from where "
                "they were trained); their commands (or the RUN = ... beside their names) name "
                "the folder each run was trained in (output_dir in its config.yaml), where the "
                "checkpoint was written. Where that folder is gone, pre-train again with the "
                "run's config.yaml.", note=True))

    figure_runs = ([] if figures in ("none", "curves") else
                   [g[0] for g in groups] if figures == "groups" else list(runs))
    figure_data = {}
    folders: set[str] = set()
    for run in figure_runs:
        folder = stem = _safe(names[run.path])
        while folder in folders:  # two names that differ only in unsafe characters
            folder = f"{stem}_{len(folders)}"
        folders.add(folder)
        figure_data[run.path] = _run_figures(run, names[run.path], folder, out, warnings)

    if runs:
        blocks.append(render.Heading(2, "Details"))
        blocks.append(render.Details("All metrics by group", [render.Table(
            ["metric", *(labels[g[0].path] for g in groups)],
            [[c.label, *(_group_cell(g, values, c) for g in groups)] for c in columns])]))
        blocks.append(render.Details("Per-run values", [render.Table(
            ["metric", *(names[r.path] for r in runs)],
            [["group", *(labels[r.path] for r in runs)],
             ["seed", *(str(r.seed) for r in runs)],
             ["method", *(r.method for r in runs)],
             *([c.label, *(_run_cell(r, values[r.path], c) for r in runs)] for c in columns)]
        )]))
        ignored = ", ".join(sorted(IGNORED_CONFIG_KEYS))
        blocks.append(render.Details("Groups and their settings", [
            render.Table(
                ["group", "method", *differing, "runs", "seeds", "directories"],
                [[labels[g[0].path], g[0].method, *(_config_value(g[0], k) for k in differing),
                  ", ".join(names[r.path] for r in g), ", ".join(str(r.seed) for r in g),
                  ", ".join(str(r.path) for r in g)] for g in groups]),
            render.Para(f"Keys ignored when grouping: {ignored}.", note=True)]))
        blocks.append(render.Details("Evaluation settings", [render.Table(
            ["run", "evaluation", "file", "features", "evaluated on", "classes", "settings",
             "checkpoint", "created", "seconds"], _settings_rows(runs, names))]))
        if figure_runs:
            which = "the first run of each group" if figures == "groups" else "every run"
            inner: list[render.Block] = [render.Para(
                f"Figures of {which}; each caption names the files and settings the figure "
                "was drawn from.", note=True)]
            for run in figure_runs:
                dest, manifest = figure_data[run.path]
                inner.extend(_figure_blocks(run, names[run.path], labels[run.path], dest,
                                            manifest, out))
            blocks.append(render.Details("Figures of each run", inner))
        if warnings:
            blocks.append(render.Details(f"Figure warnings ({len(warnings)})",
                                         [render.Items([(w, None) for w in warnings])]))

    blocks.append(render.Para(f"Generated {time.strftime('%Y-%m-%d %H:%M:%S')} by varcon "
                              "report.", note=True))
    md_path, html_path = out / "report.md", out / "report.html"
    atomic_write_text(md_path, render.to_markdown(blocks))
    atomic_write_text(html_path, render.to_html(blocks, "VarCon runs report", html_images))
    return ReportResult(markdown=md_path, html=html_path, problems=problems, warnings=warnings,
                        runs=[r.path for r in runs])
