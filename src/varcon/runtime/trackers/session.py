"""Opening the trackers of a config for one run directory, and ``trackers.json``.

``RUN_DIR/trackers.json`` names each tracker's run, so that a resumed run and later commands
(``varcon linear RUN``, ``varcon figures RUN``) continue it::

    {"format_version": 1,
     "wandb": {"id": "x9zpwpil", "project": "varcon", "entity": null, "url": null},
     "mlflow": {"run_id": "41b5...", "experiment_id": "6203...", "tracking_uri": null}}

It is written only when a tracker keeps a run (W&B, MLflow): a TensorBoard-only run has none.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from varcon._atomic import atomic_write_text

from .base import TrackedRun, Tracker, TrackerError
from .registry import get_tracker, missing_package

if TYPE_CHECKING:
    from varcon.runtime.config import Config

__all__ = ["TRACKERS_FILE", "open_trackers", "read_tracker_state"]

TRACKERS_FILE = "trackers.json"
_FORMAT_VERSION = 1


def read_tracker_state(run_dir: str | Path) -> dict[str, dict[str, Any]]:
    """``{tracker name: its saved state}`` from ``RUN_DIR/trackers.json`` (empty without one).
    ``TrackerError`` for a file that is not varcon's."""
    path = Path(run_dir) / TRACKERS_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise TrackerError(f"{path}: unreadable ({exc}); delete it to start new tracker runs "
                           "for this run directory") from exc
    if not isinstance(data, dict):
        raise TrackerError(f"{path}: not a tracker file written by varcon; delete it to start "
                           "new tracker runs for this run directory")
    return {k: v for k, v in data.items() if isinstance(v, dict)}


def _write_state(run_dir: Path, state: dict[str, dict[str, Any]]) -> None:
    atomic_write_text(run_dir / TRACKERS_FILE, json.dumps(
        {"format_version": _FORMAT_VERSION, **state}, indent=2) + "\n")


def open_trackers(cfg: Config, run_dir: str | Path, *, training: bool,
                  installed_only: bool = False) -> dict[str, Tracker]:
    """Open the trackers of ``cfg.train.loggers`` for ``run_dir``, by name.

    ``training``: for ``varcon pretrain``, every tracker, each continuing the run
    ``trackers.json`` names when ``cfg.resume`` is set and starting a new one (logging the
    config) otherwise. Else, for a later command on the run, only the trackers that keep a run
    (not TensorBoard), each continuing its run (or starting one, if it has none yet).
    ``installed_only``: leave out, rather than fail on, a tracker whose package is missing
    (``varcon figures``, which reads a run's config without validating it).

    The runs' ids go to ``trackers.json`` when they changed (the entries of trackers not
    opened now are kept when continuing). If one tracker fails to open, those already open
    are closed and its :class:`TrackerError` is raised.
    """
    from varcon.runtime.config import config_to_dict

    run_dir = Path(run_dir)
    specs = [get_tracker(name) for name in cfg.train.loggers]
    if not training:
        specs = [s for s in specs if s.tracker.keeps_run]
    if installed_only:
        specs = [s for s in specs if missing_package(s) is None]
    if not specs:
        return {}
    continuing = not training or bool(cfg.resume)
    saved = read_tracker_state(run_dir) if continuing else {}
    name = cfg.tracking.run_name or run_dir.resolve().name
    config = config_to_dict(cfg)
    opened: dict[str, Tracker] = {}
    try:
        for spec in specs:
            opened[spec.name] = spec.tracker.open(TrackedRun(
                run_dir=run_dir, name=name, config=config, options=cfg.tracking,
                saved=saved.get(spec.name)))
    except BaseException:
        for tracker in opened.values():
            tracker.close(failed=True)
        raise
    state = {k: s for k, t in opened.items() if (s := t.state()) is not None}
    merged = {**{k: v for k, v in saved.items() if k not in opened}, **state}
    if state and merged != saved:  # a run directory read-only to a later command is fine
        _write_state(run_dir, merged)
    return opened
