"""Gather the GPU check's parts into ``OUT_DIR/results.json`` and ``OUT_DIR/results.md``:
``python -m benchmarks.gpu.report OUT_DIR [--cpu-dry-run]``.

Every part is present in both files: one that wrote no result (timeout, crash) is listed
with its exit status and log file.
"""

from __future__ import annotations

import argparse
import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

PARTS = ("tests", "loss", "e2e_resnet18", "e2e_resnet18_compile", "e2e_resnet50",
         "e2e_resnet50_compile", "breakdown")


def _status(logs: Path, name: str) -> tuple[int | None, float | None]:
    """(exit status, wall seconds) of a part, as run.sh wrote them to logs/<part>.rc."""
    try:
        rc, seconds = (logs / f"{name}.rc").read_text().split()
        return int(rc), float(seconds)
    except (OSError, ValueError):
        return None, None


def read_tests(out: Path) -> dict[str, Any]:
    """Summary of the JUnit report of ``pytest tests/gpu``."""
    logs = out / "logs"
    rc, seconds = _status(logs, "tests")
    part: dict[str, Any] = {"part": "tests", "ok": False, "error": None, "results": [],
                            "rc": rc, "seconds": seconds}
    xml = out / "gpu_tests.xml"
    if not xml.is_file():
        part["error"] = f"no JUnit report (exit status {part['rc']}; see logs/tests.log)"
        return part
    counts = {"passed": 0, "failed": 0, "error": 0, "skipped": 0}
    for case in ET.parse(xml).getroot().iter("testcase"):
        outcome, message = "passed", ""
        for tag in ("failure", "error", "skipped"):
            node = case.find(tag)
            if node is not None:
                outcome = "failed" if tag == "failure" else tag
                message = (node.get("message") or "")[:300]
                break
        counts[outcome] += 1
        part["results"].append({"test": f"{case.get('classname')}::{case.get('name')}",
                                "outcome": outcome, "seconds": float(case.get("time", 0)),
                                "message": message})
    part.update(counts=counts, ok=counts["failed"] == counts["error"] == 0
                and part["rc"] in (0, 5, None))
    if not part["ok"]:
        part["error"] = (f"{counts['failed']} failed, {counts['error']} errors "
                         f"(exit status {part['rc']})")
    return part


def read_part(out: Path, name: str) -> dict[str, Any]:
    logs = out / "logs"
    f = logs / f"{name}.json"
    rc, seconds = _status(logs, name)
    if not f.is_file():
        why = "timed out" if rc in (124, 137) else f"exit status {rc}"
        return {"part": name, "ok": False, "results": [], "rc": rc, "seconds": seconds,
                "error": f"no result ({why}; see logs/{name}.log)"}
    part = json.loads(f.read_text())
    part["rc"] = rc
    return part


def _n(x: Any, digits: int = 1) -> str:
    return "–" if x is None else f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def markdown(res: dict[str, Any]) -> str:
    m, parts = res["machine"], res["parts"]
    where = m.get("gpu") or f"CPU ({m.get('cpu')})"
    lines = [f"# varcon GPU check{' (CPU dry run: toy sizes)' if res['dry_run'] else ''}",
             "", f"{where}, torch {m.get('torch')}, CUDA {m.get('cuda', '–')}, "
             f"{m.get('cpu_count')} CPU cores.", "", "| part | status | seconds |",
             "|---|---|---:|"]
    for name in PARTS:
        p = parts[name]
        status = "ok" if p["ok"] else f"**FAILED**: {p.get('error')}"
        lines.append(f"| {name} | {status} | {_n(p.get('seconds'))} |")
    t = parts["tests"]
    if t.get("counts"):
        c = t["counts"]
        lines += ["", f"GPU tests: {c['passed']} passed, {c['failed']} failed, "
                  f"{c['error']} errors, {c['skipped']} skipped."]
        lines += [f"- {r['outcome']}: `{r['test']}` {r['message']}" for r in t["results"]
                  if r["outcome"] in ("failed", "error")]
    lines += ["", "## Loss: forward + backward, median ms (peak MB)", "",
              "| N | C | dtype | ours | ours (num_classes) | authors | authors / ours |",
              "|---:|---:|---|---:|---:|---:|---:|"]
    for r in parts["loss"]["results"]:
        mem = r.get("peak_mb") or {}
        cell = {k: f"{r['ms'][k]:.2f}" + (f" ({mem[k]:.0f})" if k in mem else "")
                for k in r["ms"]}
        lines.append(f"| {r['N']} | {r['C']} | {r['dtype']} | {cell['ours']} | "
                     f"{cell['ours_nc']} | {cell['authors']} | {r['authors_over_ours']:.2f}x |")
    lines += ["", "## End-to-end pre-training, synthetic CIFAR-shaped data", "",
              "| model | loop | images/s | ms/step | vs authors | peak GPU GB | first epoch s |",
              "|---|---|---:|---:|---:|---:|---:|"]
    rows = [r for k in PARTS if k.startswith("e2e_") for r in parts[k]["results"]]
    for r in rows:
        base = next((a for a in rows if a["model"] == r["model"]
                     and a["variant"].startswith("authors")), None)
        ratio = f"{r['images_per_s'] / base['images_per_s']:.2f}x" if base else "–"
        name = r["model"] if r["encoder"] == r["model"] else f"{r['model']} ({r['encoder']})"
        lines.append(f"| {name} | {r['variant']} | {r['images_per_s']:.0f} | "
                     f"{r['step_ms']:.1f} | {ratio} | {_n(r.get('peak_gb'), 2)} | "
                     f"{_n(r.get('first_epoch_s'))} |")
    lines += ["", "## Where our step's time goes (instrumented pass: channels_last, eager)",
              "", "| model | ms/step | data wait | forward | loss | backward | optimizer |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for r in parts["breakdown"]["results"]:
        f = r["fractions"]
        lines.append(f"| {r['model']} | {r['step_ms']:.1f} | " + " | ".join(
            f"{100 * f[k]:.1f}%" for k in ("data", "forward", "loss", "backward",
                                            "optimizer")) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--cpu-dry-run", action="store_true")
    args = parser.parse_args()
    out = args.out_dir
    parts = {"tests": read_tests(out)}
    parts.update({name: read_part(out, name) for name in PARTS[1:]})
    try:  # written by the first suite process (the report itself imports no torch)
        host = json.loads((out / "logs" / "machine.json").read_text())
    except (OSError, ValueError):
        host = {"cpu_count": None, "torch": None, "error": "logs/machine.json missing"}
    res = {"dry_run": args.cpu_dry_run, "machine": host, "parts": parts,
           "ok": all(p["ok"] for p in parts.values())}
    (out / "results.json").write_text(json.dumps(res, indent=1, default=str))
    (out / "results.md").write_text(markdown(res))
    print((out / "results.md").read_text())


if __name__ == "__main__":
    main()
