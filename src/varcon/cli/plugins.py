"""Your own methods, protocols and datasets in the ``varcon`` command: plugins.

A plugin is a Python module (or ``.py`` file) that registers things when imported
(``register_method``, ``register_protocol``, ``register_dataset``, ``register_model``:
``docs/extending.md``). The command imports, before it parses its arguments:

* every module named in the environment variable ``VARCON_PLUGINS`` (comma-separated module
  names or paths of ``.py`` files), e.g. ``VARCON_PLUGINS=my_lab.varcon_plugin``;
* every entry point of the group ``varcon.plugins`` of the installed packages, e.g. in a
  plugin's ``pyproject.toml``: ``[project.entry-points."varcon.plugins"] my_lab =
  "my_lab.varcon_plugin"``.

Under ``torchrun`` every process imports them, as each runs the command.
"""

from __future__ import annotations

import importlib
import os
import runpy
from collections.abc import Callable
from functools import partial
from importlib import metadata
from pathlib import Path

__all__ = ["PluginError", "load_plugins"]

ENV = "VARCON_PLUGINS"
GROUP = "varcon.plugins"
_loaded: set[str] = set()


class PluginError(ImportError):
    """A plugin named in ``VARCON_PLUGINS`` or an entry point could not be imported."""


def _import(name: str) -> None:
    path = Path(name)
    if name.endswith(".py"):
        if not path.is_file():
            raise PluginError(f"{ENV} names {name!r}, which is not a file; give module names "
                              "or paths of .py files, separated by commas")
        runpy.run_path(str(path), run_name=f"varcon_plugin_{path.stem}")
    else:
        importlib.import_module(name)


def load_plugins(environ: dict[str, str] | None = None) -> list[str]:
    """Import the plugins (each once per process); returns what was imported now."""
    environ = dict(os.environ) if environ is None else environ
    names = [n.strip() for n in environ.get(ENV, "").split(",") if n.strip()]
    sources: list[tuple[str, Callable[[], object], str]] = [
        (name, partial(_import, name), f"{ENV}={environ[ENV]}") for name in names]
    sources += [(ep.value, ep.load, f"entry point {ep.name!r} of group {GROUP!r}")
                for ep in metadata.entry_points(group=GROUP)]
    imported = []
    for name, load, source in sources:
        if name in _loaded:
            continue
        try:
            load()
        except PluginError:
            raise
        except Exception as exc:  # a plugin's own error: name the plugin, keep the cause
            raise PluginError(f"cannot load the varcon plugin {name!r} ({source}): "
                              f"{type(exc).__name__}: {exc}") from exc
        _loaded.add(name)
        imported.append(name)
    return imported
