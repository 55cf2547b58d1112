"""The self-supervised CIFAR-10 study's verdicts (issue 19): does ``varcon_ssl`` beat
``simclr`` at equal budget, which of its parts matter, and what 10% of the labels buy.

    python benchmarks/self_supervised/claims.py [RESULTS] [--json FILE] [--figure PNG]

``RESULTS`` (default: ``benchmarks/self_supervised/results``) holds the run folders that
``run.sh`` copies, named ``<group>-s<seed>``. The statistics are those of the supervised study
(``benchmarks/accuracy/claims.py``), whose functions this script uses:

* **Paired over seeds** (simclr vs varcon_ssl; the few-label arms): the differences
  ``d_s = A_s - B_s`` over the seeds both arms have, their mean ± std and a one-sided paired
  t-test: *holds* if p < 0.05 in the claimed direction, *does not hold* if p < 0.05 the other
  way, *within noise* otherwise. With 2-3 seeds only a large, consistent difference passes.
* **Two paired seeds** (the few-label arms, seeds 1 and 2): a t-test of two differences has one
  degree of freedom and no sense of scale. Two nearly equal differences give p near 0 whatever
  their size (seed 2's linear probes did exactly that: +1.38 and +1.38). So with two seeds the
  spread is not estimated from the differences: the mean of n differences is weighed against
  sigma·√(2/n), sigma the larger of two seed-noise estimates, the main runs' seed std of the
  same metric with every label, and the seed std of this metric pooled over the arms that
  have two seeds. Beyond twice that, *holds* (or *does not hold*, the other way); else
  *within noise*. With three or more seeds, the paired t-test above.
* **Single seed** (the ablations, seed 0 against varcon_ssl seed 0): the noise sigma is the
  seed-to-seed std of the metric in the main runs, pooled over simclr and varcon_ssl; a
  difference of two single runs has std sigma·√2. Beyond twice that, the part *matters*
  (*holds*); the other way, removing it helps (*does not hold*); else *within noise*.
* A claim whose runs are missing says *not run yet* and names them.

``--figure`` draws the training curves of the main runs (kNN on val every 2 epochs, the
effective rank of the embeddings; for varcon_ssl tau2, the pseudo-class entropy against log K
and the dead prototypes) and the ablations beside the main runs' seed range.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root

from benchmarks.accuracy.claims import (
    Runs,
    Verdict,
    _fmt,
    by_seed,
    paired,
    read_results,
    to_markdown,
)

from varcon.reporting.runs import read_metrics
from varcon.reporting.stats import pooled_seed_std, single_seed_contrast

MAIN = ("simclr", "varcon_ssl")
KNN = ("kNN top-1, k=200 (%)", "knn.top1.200")
LINEAR = ("linear top-1 (%)", "linear.top1")
KNN10 = ("kNN top-1, k=200, 10% labels (%)", "labeled10.knn.top1.200")
LINEAR10 = ("linear top-1, 10% labels (%)", "labeled10.linear.top1")
ALL_LABELS = {KNN10[1]: KNN[1], LINEAR10[1]: LINEAR[1]}  # the same metric with every label
ABLATIONS = (("instance term only (no prototypes)", "varcon_ssl-inst"),
             ("prototypes only (no instance term)", "varcon_ssl-proto"),
             ("fixed tau2 (eps = 0)", "varcon_ssl-eps0"),
             ("K = 10 prototypes", "varcon_ssl-k10"),
             ("K = 300 prototypes", "varcon_ssl-k300"))
# the ablations in the figure: a short name, and a colour of their own
ABLATION_LABELS = {"varcon_ssl-inst": ("instance only", "tab:green"),
                   "varcon_ssl-proto": ("prototypes only", "tab:purple"),
                   "varcon_ssl-eps0": ("eps = 0", "tab:orange"),
                   "varcon_ssl-k10": ("K = 10", "tab:brown"),
                   "varcon_ssl-k300": ("K = 300", "tab:gray")}


def read_all(results: Path) -> Runs:
    """:func:`read_results`, plus each run's evaluation with 10% of the labels: its own
    (runs trained with ``data.labeled_fraction``) or ``eval-labeled10/`` (label-free runs
    probed afterwards with the same images labelled)."""
    runs = read_results(results)
    for group, seeds in runs.items():
        for seed, values in seeds.items():
            folder = results / f"{group}-s{seed}"
            extra = folder / "eval-labeled10"
            if group.startswith(("semi-", "sup10-")):
                extra = folder / "eval"
            for name, key in (("linear", "labeled10.linear.top1"),
                              ("knn", "labeled10.knn.top1.200")):
                file = extra / f"{name}.json"
                if file.is_file():
                    top1 = json.loads(file.read_text())["results"]["top1"]
                    values[key] = float(top1["200"] if isinstance(top1, dict) else top1)
    return runs


def noise(runs: Runs, key: str) -> tuple[float, int] | None:
    """Pooled seed-to-seed std of ``key`` over the main groups, and its degrees of freedom."""
    return pooled_seed_std([v[key] for v in runs.get(group, {}).values() if key in v]
                           for group in MAIN)


def ablation(claim: str, label: str, key: str, runs: Runs, group: str) -> Verdict:
    """Claim: varcon_ssl (seed 0) scores higher than its ablation ``group`` (seed 0)."""
    full, cut = (runs.get(g, {}).get(0, {}).get(key) for g in ("varcon_ssl", group))
    values = f"varcon_ssl: {'–' if full is None else _fmt([full])}; " \
             f"{group}: {'–' if cut is None else _fmt([cut])}"
    compared = f"varcon_ssl vs {group}"
    if full is None or cut is None:
        missing = [f"{g}-s0" for g, v in (("varcon_ssl", full), (group, cut)) if v is None]
        return Verdict(claim, label, compared, values, "–", "not run yet",
                       f"missing: {', '.join(missing)}")
    diff = full - cut
    measured = noise(runs, key)
    if measured is None:
        return Verdict(claim, label, compared, values, f"{diff:+.3g}", "not run yet",
                       "needs 2+ seeds of a main method to measure the noise")
    result = single_seed_contrast(diff, 2, measured)
    verdict = {"higher": "holds", "lower": "does not hold"}.get(result.direction, "within noise")
    return Verdict(claim, label, compared, values, f"{diff:+.3g}", verdict,
                   f"2 single runs; noise sigma = {result.sigma:.3g} (seed std in the main "
                   f"runs, {result.df} df), difference / (sigma·√2) = {result.z:+.2f}")


def few_label_paired(claim: str, label: str, key: str, runs: Runs, a: str, b: str) -> Verdict:
    """Claim: group ``a`` scores higher than group ``b`` on ``key`` (a 10%-label metric),
    paired over seeds: the t-test of :func:`paired` from three seeds, and with two the mean
    difference against the larger seed noise (module docstring)."""
    verdict = paired(claim, label, key, runs, a, b)
    ra, rb = by_seed(runs, a, key), by_seed(runs, b, key)
    seeds = sorted(set(ra) & set(rb))
    if len(seeds) != 2:
        return verdict
    diffs = [ra[s] - rb[s] for s in seeds]
    mean = sum(diffs) / len(diffs)
    estimates = [(n, where) for n, where in (
        (noise(runs, ALL_LABELS[key]), "main runs, every label"),
        (pooled_seed_std([v[key] for v in seeds_of.values() if key in v]
                         for seeds_of in runs.values()), "this metric, arms with 2+ seeds"))
        if n is not None]
    if not estimates:
        return verdict
    measured, where = max(estimates, key=lambda e: e[0][0])
    # the sum of the differences is a signed sum of 2 n single runs: its noise is sigma·√(2 n),
    # so its z is the mean's against sigma·√(2/n)
    result = single_seed_contrast(sum(diffs), 2 * len(diffs), measured)
    return replace(
        verdict, difference=f"{mean:+.3g} (2 seeds)",
        verdict={"higher": "holds", "lower": "does not hold"}.get(result.direction,
                                                                   "within noise"),
        why=f"seeds {seeds}, 2 differences ({_fmt(diffs)}): mean / (sigma·√(2/2)) = "
            f"{result.z:+.2f}, sigma = {result.sigma:.3g} ({where}, {result.df} df; the "
            "larger estimate)")


def all_claims(runs: Runs) -> list[Verdict]:
    out = [paired("varcon_ssl beats simclr at equal budget", label, key, runs, "varcon_ssl",
                  "simclr") for label, key in (KNN, LINEAR)]
    for claim, group in ABLATIONS:
        out += [ablation(f"the part matters: {claim}", label, key, runs, group)
                for label, key in (KNN, LINEAR)]
    for label, key in (KNN10, LINEAR10):
        out.append(few_label_paired(
            "10% labels: semi-supervised varcon_ssl beats supervised varcon on them alone",
            label, key, runs, "semi-varcon_ssl", "sup10-varcon"))
        out.append(few_label_paired(
            "10% labels: using them in pre-training beats probing a label-free varcon_ssl "
            "with them", label, key, runs, "semi-varcon_ssl", "varcon_ssl"))
        out.append(few_label_paired(
            "10% labels: label-free varcon_ssl beats label-free simclr", label, key, runs,
            "varcon_ssl", "simclr"))
    return out


def _curves(results: Path, group: str) -> list[list[dict]]:
    out = []
    for folder in sorted(results.glob(f"{group}-s*")):
        if (folder / "metrics.jsonl").is_file() and folder.name[len(group) + 2:].isdigit():
            out.append(read_metrics(folder / "metrics.jsonl")[0])
    return out


def figure(results: Path, runs: Runs, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"simclr": "tab:blue", "varcon_ssl": "tab:red"}
    fig, axes = plt.subplots(2, 3, figsize=(15, 8.5))
    panels = (("val_knn_top1", "kNN top-1 on val, k=200 (%)", MAIN),
              ("effective_rank", "effective rank of the embeddings (of 128; runs as on the left)",
               MAIN),
              ("tau2_mean", "tau2: mean (line) and ± std over samples (band)", ("varcon_ssl",)),
              ("marginal_entropy", "pseudo-class entropy of the batch (nats; dashed: log K)",
               ("varcon_ssl",)),
              ("dead_prototypes", "dead prototypes (of K = 100)", ("varcon_ssl",)))
    for ax, (key, title, groups) in zip(axes.flat, panels, strict=False):
        for group in groups:
            for i, records in enumerate(_curves(results, group)):
                pts = [(r["epoch"], r[key], r.get(key.replace("_mean", "_std")))
                       for r in records if isinstance(r.get(key), (int, float))]
                if not pts:
                    continue
                xs, ys = [p[0] for p in pts], [p[1] for p in pts]
                ax.plot(xs, ys, color=colors[group], alpha=0.8, marker=".",
                        label=group if i == 0 else None)
                if key == "tau2_mean" and all(p[2] is not None for p in pts):
                    ax.fill_between(xs, [y - p[2] for y, p in zip(ys, pts, strict=True)],
                                    [y + p[2] for y, p in zip(ys, pts, strict=True)],
                                    color=colors[group], alpha=0.15)
        if groups == MAIN:  # the ablations (seed 0), dashed: collapse shows here
            for group, (name, color) in ABLATION_LABELS.items():
                for records in _curves(results, group):
                    pts = [(r["epoch"], r[key]) for r in records
                           if isinstance(r.get(key), (int, float))]
                    if pts:
                        ax.plot(*zip(*pts, strict=True), color=color, linestyle="--",
                                marker=".", alpha=0.8, label=f"{name} (seed 0)")
        if key == "marginal_entropy":
            ax.axhline(math.log(100), color="grey", linestyle="--")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        # the effective-rank panel draws the kNN panel's runs in its colours: one legend
        shares_legend = groups == MAIN and ax is not axes.flat[0]
        if ax.get_legend_handles_labels()[0] and not shares_legend:
            ax.legend(fontsize=8)
    ax = axes.flat[5]
    names = ["varcon_ssl", *(g for _, g in ABLATIONS), "simclr"]
    for x, group in enumerate(names):
        seeds = runs.get(group, {})
        vals = [v[KNN[1]] for v in seeds.values() if KNN[1] in v]
        if vals:
            color = colors.get(group) or ABLATION_LABELS[group][1]
            ax.plot([x] * len(vals), vals, "o", color=color, alpha=0.7)
            if len(vals) > 1:
                ax.vlines(x, min(vals), max(vals), color=color)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels([ABLATION_LABELS.get(n, (n,))[0] for n in names], rotation=30,
                       fontsize=8)
    ax.set_title("kNN top-1 (%): main runs (every seed) and ablations (seed 0)", fontsize=10)
    ax.grid(alpha=0.3, axis="y")
    fig.suptitle("Self-supervised CIFAR-10 study: 10,000 images, ResNet-18 width 16, "
                 "20 epochs x 39 steps, batch 256", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="?", type=Path,
                        default=Path(__file__).resolve().parent / "results")
    parser.add_argument("--json", type=Path, help="also write the verdicts as JSON here")
    parser.add_argument("--figure", type=Path, help="also draw the curves to this PNG")
    args = parser.parse_args(argv)
    if not args.results.is_dir():
        parser.error(f"{args.results} is not a folder; run benchmarks/self_supervised/run.sh "
                     "first (it copies each finished run there)")
    runs = read_all(args.results)
    verdicts = all_claims(runs)
    print(f"{sum(len(s) for s in runs.values())} finished runs in {args.results}: "
          + ", ".join(f"{g} ({len(s)})" for g, s in sorted(runs.items())) + "\n")
    print(to_markdown(verdicts))
    print("\n" + __doc__.split("whose functions this script uses:")[1].split("``--figure``")[0]
          .strip())
    if args.json:
        args.json.write_text(json.dumps([asdict(v) for v in verdicts], indent=1) + "\n")
    if args.figure:
        figure(args.results, runs, args.figure)
        print(f"\nfigure: {args.figure}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
