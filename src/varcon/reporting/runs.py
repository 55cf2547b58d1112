"""Reading a run directory (the layout of docs/schema: config.yaml, metrics.jsonl, tau2/, eval/).

Only files are read here: nothing from the engine or the CLI is imported, so a report can be
built on a machine that has the results but not the training stack's devices.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from varcon._atomic import atomic_write_bytes, atomic_write_text
from varcon.evaluation.registry import ProtocolSpec, all_protocols

__all__ = [
    "IGNORED_CONFIG_KEYS",
    "NotARunError",
    "Run",
    "atomic_write_bytes",
    "atomic_write_text",
    "flatten_config",
    "load_run",
    "read_eval_files",
    "read_metrics",
    "report_protocols",
]

# Config keys that do not change a run's results: bookkeeping (names, paths, devices, progress
# display, worker and cache settings, how often files are written). Runs whose configs differ only
# in these and in ``seed`` are repeats of one experiment; the report groups them (mean ± std).
# This is the one place that list lives.
IGNORED_CONFIG_KEYS: frozenset[str] = frozenset({
    "seed",
    "name",
    "output_dir",
    "resume",
    "train.device",
    "train.progress",
    "train.overwrite",
    "train.log_every",
    "train.save_every",
    "train.tau2_every",
    "data.num_workers",
    "data.cache",
    "data.cache_dir",
    "data.download",
    # experiment trackers: where the numbers are sent, not what they are
    "train.loggers",
    "tracking.run_name",
    "tracking.wandb_project",
    "tracking.wandb_entity",
    "tracking.mlflow_tracking_uri",
    "tracking.mlflow_experiment",
})

# Older runs kept these results in the run directory itself (eval/ is preferred).
_LEGACY_ROOT_FILES = ("linear", "knn")
# Re-running an evaluation keeps the earlier file as <stem>-<YYYYmmdd-HHMMSS>[-n].json: not current.
_KEPT_COPY_RE = re.compile(r"-\d{8}-\d{6}(?:-\d+)?$")


class _YamlLoader(yaml.SafeLoader):
    """Safe loader that reads ``5e-4`` as a float (YAML 1.2), as varcon's config parser does,
    so a hand-edited config.yaml groups with the ones varcon wrote."""


_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


class NotARunError(ValueError):
    """A directory is not a readable run directory (no or unreadable ``config.yaml``)."""


@dataclass
class Run:
    """One run directory as read from disk.

    ``evals`` maps an evaluation key to its JSON envelope: the protocol's name (``"linear"``,
    ``"knn"``, ...: every registered protocol, :func:`report_protocols`) and, for a protocol
    with one file per target, ``"<name>:<target>"`` (``"transfer:cifar100"`` for
    ``eval/transfer_cifar100.json``). ``eval_files`` maps the same keys to the file read.
    ``problems`` names eval files that exist but could not be used.
    """

    path: Path
    config: dict[str, Any]
    evals: dict[str, dict[str, Any]] = field(default_factory=dict)
    eval_files: dict[str, Path] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def method(self) -> str:
        return str(self.config.get("method", "?"))

    @property
    def seed(self) -> Any:
        return self.config.get("seed")


def flatten_config(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"loss": {"epsilon": 0.02}}`` -> ``{"loss.epsilon": 0.02}``; lists stay values."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten_config(value, name + "."))
        else:
            flat[name] = value
    return flat


def read_config(run_dir: Path) -> dict[str, Any]:
    """The run's ``config.yaml`` as a dict; :class:`NotARunError` says why it cannot be read."""
    path = run_dir / "config.yaml"
    if not run_dir.is_dir():
        raise NotARunError(f"{run_dir}: not a directory; pass a run directory written by "
                           "`varcon pretrain`")
    if not path.is_file():
        raise NotARunError(f"{run_dir}: no config.yaml, so it is not a run directory; pass the "
                           "directory `varcon pretrain` wrote (it holds config.yaml)")
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_YamlLoader)  # safe
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise NotARunError(f"{path}: unreadable ({type(exc).__name__}: {exc}); restore it from "
                           "the checkpoint's config or re-run") from exc
    if not isinstance(data, dict):
        raise NotARunError(f"{path}: expected a YAML mapping of config keys, got "
                           f"{type(data).__name__}")
    return data


def _legacy_envelope(protocol: str, data: dict[str, Any]) -> dict[str, Any] | None:
    """Older runs wrote bare results to RUN_DIR/linear.json ({"top1", "top5"}) and
    RUN_DIR/knn.json ({"top1", "top5", "k", "temperature"}); give them the envelope."""
    if "top1" not in data:
        return None
    if protocol == "linear":
        results = {k: data[k] for k in ("top1", "top5", "n_test") if k in data}
        settings: dict[str, Any] = {}
    elif protocol == "knn":
        k = str(data.get("k", "?"))
        results = {"top1": {k: data["top1"]}}
        if "top5" in data:
            results["top5"] = {k: data["top5"]}
        settings = {key: data[key] for key in ("k", "temperature") if key in data}
    else:
        return None
    return {"protocol": protocol, "format_version": 0, "settings": settings,
            "results": results, "legacy": True}


def _read_eval(path: Path, protocol: str) -> tuple[dict[str, Any] | None, str | None]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return None, f"{path}: unreadable JSON ({type(exc).__name__}: {exc}); re-run the evaluation"
    if not isinstance(data, dict):
        return None, f"{path}: expected a JSON object, got {type(data).__name__}"
    if "results" not in data:
        legacy = _legacy_envelope(protocol, data)
        if legacy is None:
            return None, f"{path}: no 'results' object; re-run the evaluation"
        return legacy, None
    if not isinstance(data["results"], dict):
        return None, f"{path}: 'results' is {type(data['results']).__name__}, expected an object"
    found = data.get("protocol", protocol)
    if found != protocol:
        return None, (f"{path}: holds protocol {found!r} but the file name says {protocol!r}; "
                      "rename or re-run it")
    return data, None


def report_protocols() -> list[ProtocolSpec]:
    """The registered evaluation protocols (:mod:`varcon.evaluation.registry`) in the
    report's order: by ``report_order``, then registration."""
    return sorted(all_protocols(), key=lambda spec: spec.report_order)


def read_eval_files(run_dir: Path) -> tuple[dict[str, dict[str, Any]], dict[str, Path], list[str]]:
    """All eval JSONs of a run: (envelopes by key, files by key, problems).

    Each registered protocol's ``eval/<file>`` (single-file protocols in report order, then
    the per-target files of the others); ``RUN_DIR/linear.json`` and ``RUN_DIR/knn.json``
    (where older runs kept them) are the fallback.
    """
    evals: dict[str, dict[str, Any]] = {}
    files: dict[str, Path] = {}
    problems: list[str] = []
    eval_dir = run_dir / "eval"
    candidates: list[tuple[str, str, Path]] = []
    specs = report_protocols()
    for spec in specs:
        if not spec.per_target:
            candidates.append((spec.name, spec.name, eval_dir / spec.file))
            if spec.name in _LEGACY_ROOT_FILES:
                candidates.append((spec.name, spec.name, run_dir / spec.file))
    for spec in specs:
        if spec.per_target and eval_dir.is_dir():
            for path in sorted(eval_dir.glob(spec.file)):
                target = spec.match_file(path.name)
                if target and not _KEPT_COPY_RE.search(target):
                    candidates.append((f"{spec.name}:{target}", spec.name, path))
    for key, protocol, path in candidates:
        if key in evals or not path.is_file():
            continue
        data, problem = _read_eval(path, protocol)
        if problem:
            problems.append(problem)
        elif data is not None:
            evals[key] = data
            files[key] = path
    return evals, files, problems


def read_metrics(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """``metrics.jsonl`` as a list of objects (one per line); a bad line is skipped and named."""
    records: list[dict[str, Any]] = []
    warnings: list[str] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        return [], [f"{path}: unreadable ({type(exc).__name__}: {exc})"]
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            warnings.append(f"{path}:{number}: not JSON ({exc.msg}); line skipped")
            continue
        if not isinstance(record, dict):
            warnings.append(f"{path}:{number}: not a JSON object; line skipped")
            continue
        records.append(record)
    return records, warnings


def number(value: Any) -> float | None:
    """A result value as a float, or None when it is absent or not a number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def series(records: Iterable[Mapping[str, Any]], key: str) -> tuple[list[float], list[float]]:
    """(epochs, values) of ``key`` over metric records; a repeated epoch keeps its last value
    (a resumed run re-trains epochs), finite values only, sorted by epoch."""
    by_epoch: dict[float, float] = {}
    for record in records:
        epoch, value = number(record.get("epoch")), number(record.get(key))
        if epoch is None or value is None or not math.isfinite(value):
            continue
        by_epoch[epoch] = value
    epochs = sorted(by_epoch)
    return epochs, [by_epoch[e] for e in epochs]


def load_run(run_dir: str | os.PathLike[str]) -> Run:
    """Read a run directory: its config (required) and every eval JSON present.

    Raises :class:`NotARunError` when ``config.yaml`` is missing or unreadable; unusable eval
    files are listed in ``Run.problems`` instead, so the rest of the run is still reported.
    """
    path = Path(run_dir)
    config = read_config(path)
    evals, files, problems = read_eval_files(path)
    return Run(path=path, config=config, evals=evals, eval_files=files, problems=problems)
