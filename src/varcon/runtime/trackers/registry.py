"""Experiment trackers by name (``train.loggers``): one :class:`TrackerSpec` per tracker.

The built-in trackers (``tensorboard``, ``wandb``, ``mlflow``) register themselves, one call
each at the end of their module, when :mod:`varcon.runtime.trackers` is imported (importing
this module imports that package first). Config validation (:meth:`TrainConfig.problems
<varcon.runtime.config.TrainConfig.problems>`) checks ``train.loggers`` here, without importing
any tracking package: whether it is installed is asked of the import system only.
"""

from __future__ import annotations

import difflib
import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass

from varcon._registry import Registry

from .base import Tracker

__all__ = ["TrackerSpec", "get_tracker", "logger_problems", "missing_package",
           "register_tracker", "tracker_names", "unregister_tracker"]


@dataclass(frozen=True)
class TrackerSpec:
    """A tracker ``train.loggers`` can name.

    ``tracker``: its :class:`~varcon.runtime.trackers.base.Tracker` class; ``package``: the
    module it needs (imported only when the tracker opens), ``None`` for none; ``install``: the
    command that installs that module.
    """

    name: str
    tracker: type[Tracker]
    package: str | None = None
    install: str | None = None


_TRACKERS: Registry[TrackerSpec] = Registry("logger")


def register_tracker(spec: TrackerSpec, *, overwrite: bool = False) -> TrackerSpec:
    """Make ``spec.name`` a valid entry of ``train.loggers``."""
    return _TRACKERS.register(spec.name, spec, overwrite=overwrite)


def unregister_tracker(name: str) -> None:
    """Remove a tracker added with :func:`register_tracker` (tests, plugins)."""
    _TRACKERS.unregister(name)


def get_tracker(name: str) -> TrackerSpec:
    """The spec of ``name``; ``ValueError`` listing the trackers otherwise."""
    return _TRACKERS.get(name)


def tracker_names() -> tuple[str, ...]:
    """The names ``train.loggers`` accepts, in registration order."""
    return _TRACKERS.names()


def missing_package(spec: TrackerSpec) -> str | None:
    """Why ``spec``'s tracker cannot open here (its package is not installed, with the command
    that installs it), or ``None``. Nothing is imported."""
    if spec.package is None:
        return None
    try:
        found = importlib.util.find_spec(spec.package) is not None
    except (ImportError, ValueError):  # a broken installation counts as none
        found = False
    if found:
        return None
    fix = f": {spec.install}" if spec.install else ""
    return f"{spec.name} needs the {spec.package} package, which is not installed{fix}"


def logger_problems(names: Sequence[str], key: str = "train.loggers") -> list[str]:
    """What is wrong with ``names`` as the config's ``key``: unknown trackers (with the
    choices and the closest name), a tracker listed twice, a tracker whose package is not
    installed (with the install command)."""
    p: list[str] = []
    choices = tracker_names()
    seen: set[str] = set()
    for name in names:
        if name not in _TRACKERS:
            close = difflib.get_close_matches(str(name), choices, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            p.append(f"{key}: unknown logger {name!r}{hint}; choose from {', '.join(choices)}, "
                     f"e.g. {key}=[tensorboard,wandb]")
            continue
        if name in seen:
            p.append(f"{key}: {name} is listed twice")
        seen.add(name)
        missing = missing_package(get_tracker(name))
        if missing:
            p.append(f"{key}: {missing} (or remove {name} from {key})")
    return p
