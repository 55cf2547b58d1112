"""Evaluation result files: one JSON per protocol, written atomically, never overwriting.

Every file has the same envelope (``docs/evaluation.md``, "Result files")::

    {"protocol", "format_version", "checkpoint", "method", "encoder", "dataset",
     "eval_dataset", "features", "class_names", "settings", "results", "seconds", "created"}

An earlier file of the same name is kept as ``<stem>-<time>.json``, so re-running a command
never loses a result.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from varcon._atomic import atomic_path, atomic_write_bytes

__all__ = ["RESULT_FORMAT_VERSION", "atomic_write_bytes", "keep_previous", "read_result",
           "save_array", "write_json", "write_result"]

RESULT_FORMAT_VERSION = 1


def keep_previous(path: Path) -> None:
    """Rename an existing ``path`` to ``<stem>-<mtime>[-n]<suffix>`` so it is not lost."""
    if not path.exists():
        return
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(path.stat().st_mtime))
    target = path.with_name(f"{path.stem}-{stamp}{path.suffix}")
    n = 1
    while target.exists():
        target = path.with_name(f"{path.stem}-{stamp}-{n}{path.suffix}")
        n += 1
    path.rename(target)


def _plain(obj: Any) -> Any:
    """JSON-safe copy: NumPy/torch scalars to Python numbers, non-finite floats to None."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if hasattr(obj, "item") and getattr(obj, "ndim", 1) == 0:
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_json(path: str | Path, obj: dict[str, Any], *, keep: bool = True) -> Path:
    """Write ``obj`` as JSON atomically; with ``keep`` an earlier file is renamed, not lost."""
    path = Path(path)
    data = (json.dumps(_plain(obj), indent=2) + "\n").encode()
    if not keep:
        atomic_write_bytes(path, data)
        return path
    # The new file is complete before the earlier one is renamed: a failed write (disk full)
    # leaves the earlier result in place under its own name.
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
        keep_previous(path)
    return path


def save_array(path: str | Path, array: np.ndarray) -> Path:
    """``np.save`` atomically (figures read these matrices)."""
    path = Path(path)
    with atomic_path(path, suffix=".npy") as tmp:
        np.save(tmp, array)
    return path


def write_result(
    out_dir: str | Path,
    protocol: str,
    *,
    results: dict[str, Any],
    settings: dict[str, Any],
    context: dict[str, Any],
    seconds: float,
    name: str | None = None,
) -> Path:
    """Write ``<out_dir>/<name or protocol>.json`` with the common envelope.

    ``context`` supplies checkpoint, method, encoder, dataset, eval_dataset, features,
    class_names (see :class:`varcon.evaluation.session.EvalSession.context`).
    """
    record = {"protocol": protocol, "format_version": RESULT_FORMAT_VERSION}
    record.update(context)
    record.update({
        "settings": settings,
        "results": results,
        "seconds": round(float(seconds), 3),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    })
    return write_json(Path(out_dir) / f"{name or protocol}.json", record)


def read_result(path: str | Path) -> dict[str, Any]:
    """Read a result file; ``ValueError`` naming the file when it is not one."""
    path = Path(path)
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot read evaluation result {path}: {exc}") from exc
    if not isinstance(obj, dict) or "results" not in obj or "protocol" not in obj:
        raise ValueError(f"{path} is not a varcon evaluation result (no protocol/results)")
    return obj
