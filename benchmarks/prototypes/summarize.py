"""The prototype study's table: linear and kNN top-1 per setting and arm, mean ± std over seeds
and every seed's value, from the result folders that ``run.sh`` copies.

    python benchmarks/prototypes/summarize.py [benchmarks/prototypes/results]

Run folders are named ``<setting>-<prototypes>-<batches>-s<seed>`` (e.g. ``many-ema-random-s1``).
The last column is the difference of each arm from the paper's setting (``batch-random``) of the
same setting, over the seeds both have: mean ± std of the paired differences.
"""

from __future__ import annotations

import json
import re
import statistics
import sys
from pathlib import Path

NAME = re.compile(r"^(?P<setting>\w+)-(?P<arm>\w+-\w+)-s(?P<seed>\d+)$")
ARMS = ("batch-random", "ema-random", "batch-balanced", "ema-balanced")


def read(results: Path) -> dict[tuple[str, str], dict[int, tuple[float, float]]]:
    """{(setting, arm): {seed: (linear top-1, kNN@20 top-1)}}."""
    table: dict[tuple[str, str], dict[int, tuple[float, float]]] = {}
    for run in sorted(results.iterdir()):
        match = NAME.match(run.name)
        if not match or not (run / "eval" / "linear.json").is_file():
            continue
        linear = json.loads((run / "eval" / "linear.json").read_text())["results"]["top1"]
        knn = json.loads((run / "eval" / "knn.json").read_text())["results"]["top1"]["20"]
        key = (match["setting"], match["arm"])
        table.setdefault(key, {})[int(match["seed"])] = (float(linear), float(knn))
    return table


def cell(values: list[float]) -> str:
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.fmean(values):.2f} ± {statistics.stdev(values):.2f}"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    results = Path(args[0] if args else Path(__file__).parent / "results")
    table = read(results)
    print("| setting | arm | n | linear top-1 | seeds | kNN@20 top-1 | seeds | "
          "linear − batch-random (paired) | kNN − batch-random (paired) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for setting in sorted({s for s, _ in table}, key=lambda s: (s != "small", s)):
        base = table.get((setting, "batch-random"), {})
        for arm in ARMS:
            runs = table.get((setting, arm))
            if not runs:
                continue
            seeds = sorted(runs)
            lin = [runs[s][0] for s in seeds]
            knn = [runs[s][1] for s in seeds]
            paired = [s for s in seeds if s in base]
            diffs = ("–", "–") if arm == "batch-random" or not paired else (
                cell([runs[s][0] - base[s][0] for s in paired]),
                cell([runs[s][1] - base[s][1] for s in paired]))
            print(f"| {setting} | {arm} | {len(seeds)} | {cell(lin)} | "
                  f"{', '.join(f'{v:.2f}' for v in lin)} | {cell(knn)} | "
                  f"{', '.join(f'{v:.2f}' for v in knn)} | {diffs[0]} | {diffs[1]} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
