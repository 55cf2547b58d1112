"""Training methods by name: ``method=varcon | supcon | ce | simclr | varcon_ssl`` and any
you register.

A method is a :class:`MethodSpec`: how to build its loss from the config, how to compute
the loss and its statistics from a batch, and which head and views it needs. The training
step calls it without knowing its name (:mod:`varcon.engine.step`). This package imports
only :mod:`varcon.losses` and PyTorch, so the config, the models and the engine can all
ask it what a method needs.

Add one (worked example: ``docs/extending.md``)::

    from varcon.methods import MethodOutput, MethodSpec, register_method

    register_method(MethodSpec(name="my_method", build_loss=..., compute=...))
"""

from __future__ import annotations

from varcon._registry import Registry

from .base import MethodOutput, MethodSpec, TrainingWarning
from .ce import CE
from .simclr import SIMCLR
from .supcon import SUPCON
from .varcon import VARCON
from .varcon_ssl import VARCON_SSL

__all__ = ["METHODS", "MethodOutput", "MethodSpec", "TrainingWarning", "get_method",
           "method_names", "register_method"]

METHODS: Registry[MethodSpec] = Registry("method")


def register_method(spec: MethodSpec, *, overwrite: bool = False) -> MethodSpec:
    """Make ``spec`` available as ``method=<spec.name>`` (config, CLI, engine)."""
    if not isinstance(spec, MethodSpec):
        raise TypeError(f"register_method expects a MethodSpec, got {type(spec).__name__}")
    return METHODS.register(spec.name, spec, overwrite=overwrite)


def get_method(name: str) -> MethodSpec:
    """The registered method ``name`` (``ValueError`` listing the valid ones otherwise)."""
    return METHODS.get(name)


def method_names() -> tuple[str, ...]:
    return METHODS.names()


for _spec in (VARCON, SUPCON, CE, SIMCLR, VARCON_SSL):
    register_method(_spec)
