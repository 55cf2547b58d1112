"""Import a script that is not in a package (a benchmark's ``claims.py``, an example under
``docs/``) by its path, for a test: ``from scripttools import load_script``."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

__all__ = ["REPO", "load_script"]

REPO = Path(__file__).resolve().parents[1]  # the repository root


def load_script(name: str, path: Path) -> ModuleType:
    """The module at ``path``, executed once under ``name`` and registered in ``sys.modules``
    (dataclasses and pickling look a class's module up there)."""
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path} as a module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module
