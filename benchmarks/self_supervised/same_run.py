"""Whether a run trained again is the committed one: the same loss curve and the same evaluations.

The study's queue trains a label-free encoder again when its checkpoint is gone and it still
needs a probe (``run.sh``, ``retrain_for_probe``). Training is seeded, so the same command on
the same software gives the same weights; this checks that it did before the new probe is put
beside the committed results. Compared, exactly (floats as written):

* every epoch's training statistics in ``metrics.jsonl`` that both runs record, except the
  wall-clock ones (``epoch_time``, ``images_per_s``): a statistic a newer version adds is not
  a difference;
* the ``results`` of every ``eval/*.json`` the committed run has (top-1, top-5, ...).

Exit status 0 when equal, 1 with the first differences listed otherwise.

    python benchmarks/self_supervised/same_run.py benchmarks/self_supervised/results/simclr-s1 \\
        runs/self_supervised/simclr-s1
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from varcon.reporting.runs import read_metrics

WALL_CLOCK = frozenset({"epoch_time", "images_per_s"})


def _epochs(run: Path) -> list[dict[str, Any]]:
    path = run / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: is {run} a finished run directory?")
    records, problems = read_metrics(path)
    if problems:  # a line skipped is a line not compared: no verdict of equality
        raise ValueError("; ".join(problems))
    return records


def differences(committed: Path, retrained: Path) -> list[str]:
    """What differs between two runs' training statistics and evaluation results (empty when
    the retrained run reproduces the committed one)."""
    out: list[str] = []
    old, new = _epochs(committed), _epochs(retrained)
    if len(old) != len(new):
        out.append(f"metrics.jsonl: {len(old)} epochs committed, {len(new)} retrained")
    for a, b in zip(old, new, strict=False):  # a length mismatch is reported above
        for key in sorted((a.keys() & b.keys()) - WALL_CLOCK):
            if a[key] != b[key]:
                out.append(f"epoch {a.get('epoch')}: {key} {a[key]!r} committed, "
                           f"{b[key]!r} retrained")
    for path in sorted((committed / "eval").glob("*.json")):
        other = retrained / "eval" / path.name
        if not other.is_file():
            out.append(f"eval/{path.name}: missing from {retrained}")
            continue
        a, b = json.loads(path.read_text())["results"], json.loads(other.read_text())["results"]
        if a != b:
            out.append(f"eval/{path.name}: {a} committed, {b} retrained")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("committed", type=Path, help="the committed results of the run")
    parser.add_argument("retrained", type=Path, help="the run directory trained again")
    args = parser.parse_args(argv)
    found = differences(args.committed, args.retrained)
    if found:
        print(f"{args.retrained} differs from {args.committed}:", file=sys.stderr)
        for line in found[:10]:
            print(f"  {line}", file=sys.stderr)
        if len(found) > 10:
            print(f"  ... and {len(found) - 10} more", file=sys.stderr)
        return 1
    print(f"{args.retrained} reproduces {args.committed} (loss curve and evaluations)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
