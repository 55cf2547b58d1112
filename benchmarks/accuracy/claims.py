"""The seeded CIFAR-10 study's verdicts: each paper claim, the numbers beside it, and whether it
holds, does not hold, or is within noise at this scale.

    python benchmarks/accuracy/claims.py [RESULTS] [--json FILE] [--figure PNG]

``RESULTS`` (default: ``benchmarks/accuracy/results``) holds the run folders that ``run.sh``
copies, named ``<group>-s<seed>``: ``varcon-s0``, ``supcon-b64-s0``, ``ce-novel-s0``, ...
Numbers are read with the library's own reader (``varcon.reporting.run_metrics``: the values of
``varcon report``'s tables) and from ``metrics.jsonl`` (kNN during training, tau2).

How a verdict is reached (printed under the table as well):

* **Paired over seeds** (the main comparison, epsilon): the differences ``d_s = A_s - B_s`` over
  the seeds both arms have, their mean ± std, and a one-sided paired t-test. *holds* if
  p < 0.05 in the claimed direction, *does not hold* if p < 0.05 the other way, *within noise*
  otherwise. With 2-3 seeds only a large and consistent difference passes.
* **Single seed** (batch size, augmentation policies, novel classes): the noise is ``sigma``, the
  seed-to-seed std of the same metric in the main runs, pooled over the three methods. A contrast
  that adds or subtracts ``m`` single runs has std ``sigma * sqrt(m)``; beyond twice that in the
  claimed direction it *holds*, the other way it *does not hold*, else *within noise*.
* **tau2**: the mean rises if its last epoch is above its first on every VarCon seed; the spread
  persists if the last epoch's std is at least half of the first epoch's on every seed.
* A claim whose runs are missing says *not run yet* and names them.

``--figure`` draws the ablations side by side (batch size, augmentation policy, epsilon, novel
classes; a panel per ablation that has runs): seed 0 as points and lines, since the ablations
have seed 0 only, and at the main setting (batch 256, SimAugment) a bar from the lowest to the
highest seed of the main runs, the noise a single-seed difference has to beat.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import statistics
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from varcon.reporting import NotARunError, load_run, run_metrics
from varcon.reporting.runs import read_metrics
from varcon.reporting.stats import (
    ALPHA,
    paired_difference,
    pooled_seed_std,
    single_seed_contrast,
)

NAME = re.compile(r"^(?P<group>[\w.-]+?)-s(?P<seed>\d+)$")
METHODS = ("varcon", "supcon", "ce")

# (label, key) of the numbers compared between methods; keys of varcon.reporting.run_metrics
LINEAR = ("linear top-1 (%)", "linear.top1")
KNN = ("kNN top-1, k=20 (%)", "knn.top1.20")
CLUSTER = (("ARI, agglomerative Ward", "cluster.agglomerative_ward.ari"),
           ("NMI, agglomerative Ward", "cluster.agglomerative_ward.nmi"),
           ("ARI, k-means", "cluster.kmeans.ari"))
FEWSHOT = (("5-way 1-shot, nearest centroid (%)", "fewshot.5w1s.ncm"),
           ("5-way 5-shot, nearest centroid (%)", "fewshot.5w5s.ncm"))
ROBUSTNESS = ("mean corruption accuracy (%)", "robustness.mca")
# computed from metrics.jsonl: the kNN-during-training curve
CURVE_MEAN = ("mean kNN top-1 over the curve (%)", "curve.knn_mean")
CURVE_EARLY = ("kNN top-1 at epoch 4 (%)", "curve.knn_epoch4")

Runs = dict[str, dict[int, dict[str, float]]]  # group -> seed -> metric -> value


@dataclass
class Verdict:
    claim: str
    metric: str
    compared: str  # "varcon vs supcon", ...
    values: str  # every seed's value of each arm
    difference: str  # mean ± std (paired) or the contrast
    verdict: str  # holds | does not hold | within noise | not run yet
    why: str  # the statistic behind the verdict


# ----------------------------------------------------------------------------- reading


def curve_metrics(records: Sequence[dict]) -> dict[str, float]:
    """Numbers of a run's training log: the kNN curve (``val_knn_top1``), tau2 at the ends."""
    out: dict[str, float] = {}
    knn = [(int(r["epoch"]), float(r["val_knn_top1"])) for r in records
           if isinstance(r.get("val_knn_top1"), (int, float)) and "epoch" in r]
    if knn:
        out["curve.knn_mean"] = statistics.fmean(v for _, v in knn)
        at4 = [v for e, v in knn if e == 4]
        if at4:
            out["curve.knn_epoch4"] = at4[0]
    tau = [r for r in records if isinstance(r.get("tau2_mean"), (int, float))
           and isinstance(r.get("tau2_std"), (int, float))]
    if tau:
        out["tau2.mean_first"], out["tau2.std_first"] = tau[0]["tau2_mean"], tau[0]["tau2_std"]
        out["tau2.mean_last"], out["tau2.std_last"] = tau[-1]["tau2_mean"], tau[-1]["tau2_std"]
        out["tau2.epoch_first"], out["tau2.epoch_last"] = tau[0]["epoch"], tau[-1]["epoch"]
    return out


def read_results(results: Path) -> Runs:
    """Every finished run (one with ``eval/linear.json``) of ``results``, by group and seed."""
    runs: Runs = {}
    for folder in sorted(p for p in results.iterdir() if p.is_dir()):
        match = NAME.match(folder.name)
        if not match or not (folder / "eval" / "linear.json").is_file():
            continue  # interrupted, a temp copy, or not a run
        try:
            run = load_run(folder)
        except NotARunError:
            continue
        values = run_metrics(run)
        transfers = [k for k in values if k.startswith("transfer.") and k.endswith(".top1")]
        if len(transfers) == 1:  # the novel-class runs' one transfer (cifar10-subset)
            values["transfer.top1"] = values[transfers[0]]
        if (folder / "metrics.jsonl").is_file():
            values.update(curve_metrics(read_metrics(folder / "metrics.jsonl")[0]))
        runs.setdefault(match["group"], {})[int(match["seed"])] = values
    return runs


# ----------------------------------------------------------------------------- statistics


def _fmt(values: Sequence[float]) -> str:
    return ", ".join(f"{v:.4g}" if abs(v) < 1 else f"{v:.2f}" for v in values)


def _mean_std(values: Sequence[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:+.3g}"
    return f"{statistics.fmean(values):+.3g} ± {statistics.stdev(values):.2g}"


def by_seed(runs: Runs, group: str, key: str) -> dict[int, float]:
    """``key`` of each seed of ``group`` that has it."""
    return {s: v[key] for s, v in runs.get(group, {}).items() if key in v}


def paired(claim: str, label: str, key: str, runs: Runs, a: str, b: str) -> Verdict:
    """Claim: group ``a`` scores higher than group ``b`` on ``key``, paired over seeds."""
    ra, rb = by_seed(runs, a, key), by_seed(runs, b, key)
    seeds = sorted(set(ra) & set(rb))
    values = f"{a}: {_fmt([ra[s] for s in sorted(ra)]) or '–'}; " \
             f"{b}: {_fmt([rb[s] for s in sorted(rb)]) or '–'}"
    compared = f"{a} vs {b}"
    if len(seeds) < 2:
        missing = [f"{g}-s<seed>" for g, r in ((a, ra), (b, rb)) if len(r) < 2]
        return Verdict(claim, label, compared, values, "–", "not run yet",
                       f"needs 2+ paired seeds; have seeds {seeds}"
                       + (f" (missing: {', '.join(missing)})" if missing else ""))
    diff = paired_difference(ra, rb)
    p_up, p_down = diff.p_higher, diff.p_lower
    verdict = "holds" if p_up < ALPHA else "does not hold" if p_down < ALPHA else "within noise"
    return Verdict(claim, label, compared, values, _mean_std(diff.differences), verdict,
                   f"paired over seeds {list(diff.seeds)}: one-sided p = {p_up:.3f} (higher), "
                   f"{p_down:.3f} (lower)")


def seed_noise(runs: Runs, key: str) -> tuple[float, int] | None:
    """Pooled seed-to-seed std of ``key`` over the main runs, and its degrees of freedom."""
    return pooled_seed_std([v[key] for v in runs.get(method, {}).values() if key in v]
                           for method in METHODS)


def contrast(claim: str, label: str, key: str, runs: Runs, terms: Sequence[tuple[int, str]],
             compared: str, noise_key: str | None = None,
             value: Callable[[list[float]], float] | None = None) -> Verdict:
    """Claim: ``sum(sign * run)`` over single runs (seed 0) is positive.

    ``terms`` are (sign, group); ``value`` replaces the signed sum (e.g. a difference of ranges)
    and then ``len(terms)`` is the number of runs the noise counts. ``noise_key`` names the
    metric whose seed spread in the main runs stands for the noise (default: ``key``).
    """
    got = {g: runs.get(g, {}).get(0, {}).get(key) for _, g in terms}
    values = "; ".join(f"{g}: {'–' if v is None else _fmt([v])}" for g, v in got.items())
    missing = [f"{g}-s0" for g, v in got.items() if v is None]
    if missing:
        return Verdict(claim, label, compared, values, "–", "not run yet",
                       f"missing: {', '.join(missing)}")
    xs = [sign * got[g] for sign, g in terms]
    c = value([got[g] for _, g in terms]) if value else sum(xs)
    noise = seed_noise(runs, noise_key or key)
    if noise is None:
        return Verdict(claim, label, compared, values, f"{c:+.3g}", "not run yet",
                       "needs 2+ seeds of a main method to measure the noise")
    result = single_seed_contrast(c, len(terms), noise)
    verdict = {"higher": "holds", "lower": "does not hold"}.get(result.direction, "within noise")
    return Verdict(claim, label, compared, values, f"{c:+.3g}", verdict,
                   f"{len(terms)} single runs; noise sigma = {result.sigma:.3g} (seed std of "
                   f"{noise_key or key} in the main runs, {result.df} df), contrast / "
                   f"(sigma·√{len(terms)}) = {result.z:+.2f}")


def tau2_claims(runs: Runs) -> list[Verdict]:
    seeds = sorted(s for s, v in runs.get("varcon", {}).items() if "tau2.mean_first" in v)
    if not seeds:
        return [Verdict("mean tau2 rises over training while its spread persists", "tau2",
                        "varcon", "–", "–", "not run yet", "no varcon run with tau2 logged")]
    r = runs["varcon"]
    first, last = int(r[seeds[0]]["tau2.epoch_first"]), int(r[seeds[0]]["tau2.epoch_last"])
    rise = [r[s]["tau2.mean_last"] - r[s]["tau2.mean_first"] for s in seeds]
    ratio = [r[s]["tau2.std_last"] / r[s]["tau2.std_first"] for s in seeds]
    return [
        Verdict("mean tau2 rises over training", f"tau2 mean, epoch {last} − epoch {first}",
                "varcon", "; ".join(f"s{s}: {r[s]['tau2.mean_first']:.4g} → "
                                    f"{r[s]['tau2.mean_last']:.4g}" for s in seeds),
                _mean_std(rise), "holds" if all(x > 0 for x in rise) else "does not hold",
                f"rises on {sum(x > 0 for x in rise)} of {len(seeds)} seeds"),
        Verdict("the spread of tau2 persists", f"tau2 std, epoch {last} / epoch {first}",
                "varcon", "; ".join(f"s{s}: {r[s]['tau2.std_first']:.4g} → "
                                    f"{r[s]['tau2.std_last']:.4g}" for s in seeds),
                _fmt(ratio), "holds" if all(x >= 0.5 for x in ratio) else "does not hold",
                f"ratio ≥ 0.5 on {sum(x >= 0.5 for x in ratio)} of {len(seeds)} seeds"),
    ]


# ----------------------------------------------------------------------------- the claims


def _range_difference(values: list[float]) -> float:
    """supcon's range over policies minus varcon's: values = varcon x3 then supcon x3."""
    return (max(values[3:]) - min(values[3:])) - (max(values[:3]) - min(values[:3]))


def all_claims(runs: Runs) -> list[Verdict]:
    out: list[Verdict] = []
    for other in ("supcon", "ce"):
        name = "SupCon" if other == "supcon" else "cross-entropy"
        out.append(paired(f"higher linear top-1 than {name}", *LINEAR, runs, "varcon", other))
        out.append(paired(f"higher kNN accuracy than {name}", *KNN, runs, "varcon", other))
        out += [paired(f"better clustering agreement with the labels than {name}", label, key,
                       runs, "varcon", other) for label, key in CLUSTER]
        out += [paired(f"better few-shot accuracy than {name}", label, key, runs, "varcon",
                       other) for label, key in FEWSHOT]
        out.append(paired(f"more robust to corruptions than {name}", *ROBUSTNESS, runs,
                          "varcon", other))
    out += [paired("converges faster than SupCon", label, key, runs, "varcon", "supcon")
            for label, key in (CURVE_EARLY, CURVE_MEAN)]
    out += tau2_claims(runs)
    out += [paired("adaptive tau2 (eps 0.02) beats a fixed one (eps 0)", label, key, runs,
                   "varcon", "varcon-eps0") for label, key in (LINEAR, KNN)]
    for label, key in (LINEAR, KNN):
        out.append(contrast(
            "VarCon loses less than SupCon from batch 512 to 64", f"{label}: (V64 − V512) − "
            "(S64 − S512)", key, runs, [(1, "varcon-b64"), (-1, "varcon-b512"),
                                        (-1, "supcon-b64"), (1, "supcon-b512")],
            "varcon vs supcon"))
    groups = ["varcon", "varcon-autoaugment", "varcon-randaugment",
              "supcon", "supcon-autoaugment", "supcon-randaugment"]
    out.append(contrast(
        "VarCon varies less than SupCon across augmentation policies",
        f"{LINEAR[0]}: range over simaugment/autoaugment/randaugment, SupCon's − VarCon's",
        LINEAR[1], runs, [(1, g) for g in groups], "varcon vs supcon", value=_range_difference))
    for other in ("supcon-novel", "ce-novel"):
        for label, key in FEWSHOT:
            out.append(contrast("better few-shot accuracy on 5 classes unseen in pre-training",
                                label, key, runs, [(1, "varcon-novel"), (-1, other)],
                                f"varcon-novel vs {other}"))
        out.append(contrast("better linear transfer to 5 classes unseen in pre-training",
                            "transfer top-1 (%)", "transfer.top1", runs,
                            [(1, "varcon-novel"), (-1, other)], f"varcon-novel vs {other}",
                            noise_key=LINEAR[1]))
    return out


# ----------------------------------------------------------------------------- figure

BATCHES = ((64, "-b64"), (256, ""), (512, "-b512"))
POLICIES = (("simaugment", ""), ("autoaugment", "-autoaugment"), ("randaugment", "-randaugment"))
ARMS = ("varcon", "supcon")


def _seed0(runs: Runs, group: str, key: str) -> float | None:
    return runs.get(group, {}).get(0, {}).get(key)


def _seed_range(runs: Runs, group: str, key: str) -> tuple[float, float] | None:
    vals = [v[key] for v in runs.get(group, {}).values() if key in v]
    return (min(vals), max(vals)) if len(vals) >= 2 else None


def _spread_bar(ax, x: float, runs: Runs, group: str, key: str, color: str) -> None:
    """The main runs' lowest-to-highest seed at ``x``: the noise a single seed has to beat."""
    span = _seed_range(runs, group, key)
    if span is not None:
        ax.vlines(x, *span, color=color, linewidth=6, alpha=0.3)


def ablation_figure(runs: Runs, path: Path) -> list[str]:
    """Draw the ablations that have runs (see the module docstring) to ``path``; returns the
    panels drawn (``[]``: nothing to draw, no file written)."""
    panels: list[str] = []
    if any(f"{m}{suffix}" in runs for m in ARMS for _, suffix in BATCHES if suffix):
        panels.append("batch")
    if any(f"{m}{suffix}" in runs for m in ARMS for _, suffix in POLICIES if suffix):
        panels.append("augment")
    if "varcon-eps0" in runs:
        panels.append("epsilon")
    if any(f"{m}-novel" in runs for m in METHODS):
        panels.append("novel")
    if not panels:
        return []
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    colors = {"varcon": "tab:blue", "supcon": "tab:orange", "ce": "tab:green",
              "varcon-eps0": "tab:purple"}
    cols = min(len(panels), 2)
    rows = -(-len(panels) // cols)
    fig = Figure(figsize=(5.6 * cols, 4.0 * rows))
    key = LINEAR[1]

    def line(ax, xs: Sequence[float], vals: Sequence[float | None], color: str,
             label: str) -> None:
        """Points (None: not run, left out) joined by a line; the axis is not cut at 0, so a
        difference of a point is visible."""
        pts = [(x, v) for x, v in zip(xs, vals, strict=True) if v is not None]
        ax.plot([x for x, _ in pts], [v for _, v in pts], marker="o", color=color, label=label)

    for i, panel in enumerate(panels):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.set_ylabel(LINEAR[0])
        if panel == "batch":
            for m in ARMS:
                line(ax, [b for b, _ in BATCHES],
                     [_seed0(runs, f"{m}{s}", key) for _, s in BATCHES], colors[m],
                     f"{m} (seed 0)")
                _spread_bar(ax, 256, runs, m, key, colors[m])
            ax.set_xscale("log", base=2)
            ax.set_xticks([b for b, _ in BATCHES], [str(b) for b, _ in BATCHES])
            ax.set_xlabel("batch size (lr scaled linearly)")
            ax.set_title("batch size")
        elif panel == "augment":
            for m in ARMS:
                line(ax, range(len(POLICIES)),
                     [_seed0(runs, f"{m}{s}", key) for _, s in POLICIES], colors[m],
                     f"{m} (seed 0)")
                _spread_bar(ax, 0, runs, m, key, colors[m])
            ax.set_xticks(range(len(POLICIES)), [p for p, _ in POLICIES])
            ax.set_xlim(-0.4, len(POLICIES) - 0.6)
            ax.set_title("augmentation policy")
        elif panel == "epsilon":
            seeds = sorted(runs["varcon-eps0"])
            for j, (group, label) in enumerate((("varcon", "eps 0.02: adaptive tau2"),
                                                ("varcon-eps0", "eps 0: fixed tau2"))):
                vals = [runs.get(group, {}).get(s, {}).get(key) for s in seeds]
                ax.scatter([j] * len(seeds), [v if v is not None else math.nan for v in vals],
                           color=colors[group], label=label, zorder=3)
            for s in seeds:  # each seed's pair joined: the paired difference is the slope
                pair = [runs.get(g, {}).get(s, {}).get(key) for g in ("varcon", "varcon-eps0")]
                if None not in pair:
                    ax.plot([0, 1], pair, color="gray", linewidth=1)
                    ax.annotate(f"s{s}", (1, pair[1]), xytext=(6, 0),
                                textcoords="offset points", va="center", fontsize="x-small")
            ax.set_xticks([0, 1], ["eps 0.02", "eps 0"])
            ax.set_xlim(-0.5, 1.5)
            ax.set_title("VarCon: adaptive vs fixed temperature (paired by seed)")
        else:  # novel
            metrics = (("5-way 1-shot", FEWSHOT[0][1]), ("5-way 5-shot", FEWSHOT[1][1]),
                       ("linear transfer", "transfer.top1"))
            for j, m in enumerate(METHODS):
                vals = [_seed0(runs, f"{m}-novel", k) for _, k in metrics]
                xs = [k + (j - 1) * 0.12 for k in range(len(metrics))]
                ax.scatter(xs, [v if v is not None else math.nan for v in vals],
                           color=colors[m], label=f"{m} (seed 0)", zorder=3)
            ax.set_xticks(range(len(metrics)), [label for label, _ in metrics])
            ax.set_ylabel("top-1 on the 5 unseen classes (%)")
            ax.set_title("pre-trained on 5 classes, evaluated on the other 5")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="x-small", loc="best")
    fig.suptitle("Ablations: single runs (seed 0), epsilon paired by seed; shaded bar: the main "
                 "runs' seed range", fontsize="medium")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return panels


def to_markdown(verdicts: Sequence[Verdict]) -> str:
    lines = ["| claim | metric | compared | values (every seed) | difference | verdict | why |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {v.claim} | {v.metric} | {v.compared} | {v.values} | {v.difference} | "
              f"**{v.verdict}** | {v.why} |" for v in verdicts]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="?", type=Path,
                        default=Path(__file__).resolve().parent / "results")
    parser.add_argument("--json", type=Path, help="also write the verdicts as JSON here")
    parser.add_argument("--figure", type=Path, help="also draw the ablations to this PNG")
    args = parser.parse_args(argv)
    if not args.results.is_dir():
        parser.error(f"{args.results} is not a folder; run benchmarks/accuracy/run.sh first "
                     "(it copies each finished run there)")
    runs = read_results(args.results)
    verdicts = all_claims(runs)
    print(f"{sum(len(s) for s in runs.values())} finished runs in {args.results}: "
          + ", ".join(f"{g} ({len(s)})" for g, s in sorted(runs.items())) + "\n")
    print(to_markdown(verdicts))
    print("\n" + __doc__.split("How a verdict is reached (printed under the table as well):")[1]
          .strip())
    if args.json:
        args.json.write_text(json.dumps([asdict(v) for v in verdicts], indent=1) + "\n")
    if args.figure:
        drawn = ablation_figure(runs, args.figure)
        print(f"\nfigure: {args.figure} ({', '.join(drawn)})" if drawn else
              "\nfigure: no ablation has runs yet; nothing drawn", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
