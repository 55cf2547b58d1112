"""What every experiment tracker does, and the names it gives what it logs.

A tracker (:class:`Tracker`) is one tool's connection to one run: TensorBoard's event files, a
Weights & Biases run, an MLflow run. The names are shared by all tools, so that a value has the
same name in each:

* step scalars ``step/<key>`` against the global step, epoch scalars ``epoch/<key>`` against
  the epoch (from 1), ``<key>`` being a key of ``metrics.jsonl``;
* evaluation results ``eval/<protocol>/<path>``, the path of a number in the ``results`` of the
  protocol's result file (:func:`evaluation_metrics`: ``eval/linear/top1``,
  ``eval/knn/top1/20``, ``eval/cluster/algorithms/kmeans/nmi``);
* the config, nested (W&B) or flattened to ``section.key`` (MLflow params:
  :func:`flatten_config`);
* figures by file stem, ``figures/<stem>``.

Names keep to the characters MLflow accepts (letters, digits, ``_ - . : /`` and spaces): any
other character becomes ``_``.

This module imports nothing of varcon and no tracking package.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

__all__ = ["TrackedRun", "Tracker", "TrackerError", "evaluation_metrics", "flatten_config",
           "metric_name"]

_NOT_ALLOWED = re.compile(r"[^\w\-. :/]")
# A few-shot task is one item of a list: named by these fields (5way-1shot-ncm), as the
# command line's table names it, rather than by its index.
_ITEM_LABELS = (("n_way", "{}way"), ("k_shot", "{}shot"), ("classifier", "{}"))
_LABEL_KEYS = frozenset(key for key, _ in _ITEM_LABELS)


class TrackerError(ValueError):
    """A tracker could not start or continue its run; the message says how to fix it.

    A ``ValueError``, so that the command line reports it as one ``error:`` line."""


@dataclass(frozen=True)
class TrackedRun:
    """What a tracker needs to start, or continue, the tracker run of one varcon run.

    ``name``: the run's display name (``tracking.run_name``, else the run directory's name);
    ``config``: the resolved config as plain nested data; ``options``: the ``tracking`` config
    section; ``saved``: what this tracker stored in ``trackers.json`` to continue its run
    (``None``: start a new run, and log the config).
    """

    run_dir: Path
    name: str
    config: dict[str, Any]
    options: Any  # varcon.runtime.config.TrackingConfig (not imported: no cycle)
    saved: dict[str, Any] | None = None


class Tracker:
    """One experiment tracker's connection to one run.

    :meth:`open` starts a run (and records the config) or continues the one ``run.saved``
    names; :meth:`state` is what ``trackers.json`` keeps to continue it later. The ``log_*``
    methods record what their tool shows; the defaults record nothing, so a tracker overrides
    only what it keeps. ``keeps_run``: whether later commands (``varcon linear RUN``,
    ``varcon figures RUN``) log to this tracker's run; TensorBoard's files record training only.
    """

    keeps_run: ClassVar[bool] = True

    @classmethod
    def open(cls, run: TrackedRun) -> Tracker:
        """Start the tracker run of ``run``, or continue ``run.saved``'s; raise
        :class:`TrackerError` naming the fix when the tool cannot."""
        raise NotImplementedError

    def state(self) -> dict[str, Any] | None:
        """Plain data naming this tracker's run (its id, project, store), kept in
        ``trackers.json``; ``None`` when there is nothing to continue."""
        return None

    def log_step(self, step: int, scalars: Mapping[str, float]) -> None:
        """Scalars of one training step (``step``: the global step, from 0)."""

    def log_epoch(self, epoch: int, scalars: Mapping[str, float]) -> None:
        """The scalars of one epoch's ``metrics.jsonl`` record (``epoch`` from 1)."""

    def log_evaluation(self, metrics: Mapping[str, float]) -> None:
        """Evaluation results named ``eval/<protocol>/<path>`` (:func:`evaluation_metrics`)."""

    def log_figures(self, paths: Sequence[Path]) -> None:
        """PNG files (``varcon figures``, ``varcon cluster``)."""

    def close(self, failed: bool = False) -> None:
        """End this process's connection to the run (``failed``: it ended with an error)."""


def metric_name(*parts: object) -> str:
    """``parts`` joined by ``/``, characters MLflow refuses replaced by ``_``."""
    return _NOT_ALLOWED.sub("_", "/".join(str(p) for p in parts))


def _number(value: Any) -> float | None:
    """A finite or non-finite float for ints and floats; ``None`` for anything else (bools
    included: they are flags, not measurements)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _item_label(item: Mapping[str, Any], index: int) -> str:
    parts = [fmt.format(item[key]) for key, fmt in _ITEM_LABELS if key in item]
    return "-".join(parts) if parts else str(index)


def evaluation_metrics(protocol: str, results: Mapping[str, Any]) -> dict[str, float]:
    """The numbers of one evaluation's ``results`` as ``{"eval/<protocol>/<path>": value}``.

    Nested mappings give path segments (``{"top1": {"20": 97.1}}`` -> ``eval/knn/top1/20``);
    a list of mappings (few-shot tasks) names each item by its ``n_way``, ``k_shot`` and
    ``classifier`` (``eval/fewshot/tasks/5way-1shot-ncm/mean``); lists of numbers (per-epoch
    curves), strings, bools and ``None`` are left out.
    """
    out: dict[str, float] = {}

    def walk(prefix: tuple[str, ...], value: Any) -> None:
        if isinstance(value, Mapping):
            for key, child in value.items():
                walk((*prefix, str(key)), child)
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, Mapping):  # its labelling fields are not results
                    walk((*prefix, _item_label(item, i)),
                         {k: v for k, v in item.items() if k not in _LABEL_KEYS})
        else:
            number = _number(value)
            if number is not None:
                out[metric_name("eval", protocol, *prefix)] = number

    walk((), results)
    return out


def _param_value(value: Any) -> str:
    """A config value as MLflow param text: strings as they are, the rest as JSON
    (``true``, ``null``, ``[0.2, 1.0]``), as YAML would read them back."""
    if isinstance(value, str):
        return value
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return json.dumps(value)


def flatten_config(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """The config's values as ``{"section.key": text}`` (nested mappings flattened further:
    ``data.augment_params.hflip_p``; an empty mapping keeps its key, as ``{}``)."""
    out: dict[str, str] = {}
    for key, value in config.items():
        name = _NOT_ALLOWED.sub("_", f"{prefix}{key}")
        if isinstance(value, Mapping) and value:
            out.update(flatten_config(value, f"{name}."))
        else:
            out[name] = _param_value(value)
    return out
