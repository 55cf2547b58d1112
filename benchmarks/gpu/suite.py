"""Run parts of the GPU check: ``python -m benchmarks.gpu.suite OUT_DIR PART... [--cpu-dry-run]``.

Each part writes ``OUT_DIR/logs/<part>.json`` (its results, or its error). ``run.sh`` runs
one process per part on the GPU machine (each with its own timeout) and all parts in one
process for the CPU dry run. Parts: loss, e2e_resnet18, e2e_resnet18_compile, e2e_resnet50,
e2e_resnet50_compile, breakdown.
"""

from __future__ import annotations

import argparse
import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from .common import Sizes, machine, sizes, write_part

PARTS: dict[str, Callable[[Sizes], list[dict[str, Any]]]] = {}


def _part(name: str) -> Callable[[Callable[[Sizes], list[dict[str, Any]]]],
                                 Callable[[Sizes], list[dict[str, Any]]]]:
    def register(fn: Callable[[Sizes], list[dict[str, Any]]]
                 ) -> Callable[[Sizes], list[dict[str, Any]]]:
        PARTS[name] = fn
        return fn
    return register


@_part("loss")
def _loss(s: Sizes) -> list[dict[str, Any]]:
    from . import loss
    return loss.run(s)


def _e2e(slot: str, compile_: bool) -> Callable[[Sizes], list[dict[str, Any]]]:
    def body(s: Sizes) -> list[dict[str, Any]]:
        from . import e2e
        rows = [e2e.ours(s, slot, compile_=compile_)]
        if not compile_:  # the authors' loop once per model, beside our eager run
            rows.append(e2e.authors(s, slot))
        return rows
    return body


for _slot in ("resnet18", "resnet50"):
    _part(f"e2e_{_slot}")(_e2e(_slot, False))
    _part(f"e2e_{_slot}_compile")(_e2e(_slot, True))


@_part("breakdown")
def _breakdown(s: Sizes) -> list[dict[str, Any]]:
    from . import e2e
    return [e2e.breakdown(s, slot) for slot in ("resnet18", "resnet50")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("parts", nargs="+", choices=sorted(PARTS))
    parser.add_argument("--cpu-dry-run", action="store_true")
    args = parser.parse_args()
    s = sizes(args.cpu_dry_run)
    if args.cpu_dry_run:
        # Toy sizes on a CPU: compile through dynamo's eager backend (the code path, in
        # seconds; inductor on a CPU is tests/engine/test_cpu_precision_paths.py's).
        torch.compile = functools.partial(torch.compile, backend="eager")  # type: ignore[assignment]
        torch.set_num_threads(2)
    elif not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run with --cpu-dry-run on a machine without a GPU")
    host = args.out_dir / "logs" / "machine.json"
    if not host.is_file():
        host.parent.mkdir(parents=True, exist_ok=True)
        host.write_text(json.dumps({**machine(), "dry_run": s.dry_run}, indent=1))
    for name in args.parts:
        write_part(args.out_dir, name, functools.partial(PARTS[name], s))


if __name__ == "__main__":
    main()
