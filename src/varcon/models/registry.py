"""Name -> encoder-factory registry.

A factory is any callable ``fn(**kwargs) -> nn.Module`` whose result has an integer
``out_dim`` attribute: the encoder maps images ``[N, C, H, W]`` to features ``[N, out_dim]``.

A *prefix hook* (:func:`register_prefix`) serves a whole family of names from another
library: ``timm/<name>`` builds timm's ``<name>`` (:mod:`varcon.models.timm_backbones`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

__all__ = ["check_model_kwargs", "create_model", "list_models", "register_model",
           "register_prefix"]

Factory = Callable[..., nn.Module]
F = TypeVar("F", bound=Factory)

_REGISTRY: dict[str, Factory] = {}
# prefix -> (factory(rest, **kwargs), check(rest, kwargs), example names for error messages)
_PREFIXES: dict[str, tuple[Factory, Callable[[str, dict[str, Any]], None], str]] = {}


def register_model(name: str, *, overwrite: bool = False) -> Callable[[F], F]:
    """Decorator registering ``fn`` under ``name`` (returns ``fn`` unchanged).

    Registering an existing name raises ``ValueError`` unless ``overwrite=True``.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"model name must be a non-empty string, got {name!r}")

    def decorator(fn: F) -> F:
        if not callable(fn):
            raise TypeError(f"register_model({name!r}) expects a callable, got {type(fn)!r}")
        if name in _REGISTRY and not overwrite and _REGISTRY[name] is not fn:
            raise ValueError(f"model {name!r} is already registered")
        _REGISTRY[name] = fn
        return fn

    return decorator


def register_prefix(prefix: str, factory: Factory,
                    check: Callable[[str, dict[str, Any]], None], *, example: str = "") -> None:
    """Serve every name ``<prefix><rest>`` with ``factory(rest, **kwargs)``.

    ``check(rest, kwargs)`` validates without building (``ValueError`` for an unknown name,
    ``TypeError`` for bad arguments); ``example`` is shown when a name is unknown.
    """
    if not isinstance(prefix, str) or not prefix.endswith("/") or len(prefix) < 2:
        raise ValueError(f"a model prefix ends with '/', e.g. 'timm/', got {prefix!r}")
    _PREFIXES[prefix] = (factory, check, example)


def _prefixed(name: str) -> tuple[str, tuple[Factory, Any, str]] | None:
    for prefix, hook in _PREFIXES.items():
        if isinstance(name, str) and name.startswith(prefix):
            return name[len(prefix):], hook
    return None


def _unknown(name: str) -> ValueError:
    others = "".join(f"; or {example}" for _, _, example in _PREFIXES.values() if example)
    return ValueError(f"unknown model {name!r}; available: {', '.join(list_models())}{others}")


def list_models() -> list[str]:
    """Sorted names of all registered encoders (prefix families such as ``timm/`` are not
    enumerated: see their own libraries)."""
    return sorted(_REGISTRY)


def _check_kwargs(name: str, fn: Factory, kwargs: dict[str, Any]) -> None:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):  # builtins without a signature: let the call decide
        return
    params = sig.parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return
    accepted = {
        p.name
        for p in params
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    }
    unknown = sorted(set(kwargs) - accepted)
    if unknown:
        raise TypeError(
            f"model {name!r} got unknown argument(s) {unknown}; accepted: {sorted(accepted)}"
        )


def check_model_kwargs(name: str, kwargs: dict[str, Any]) -> None:
    """Raise ``ValueError`` for an unknown model name and ``TypeError`` for arguments its
    factory does not accept, without building the model (config validation uses this)."""
    prefixed = _prefixed(name)
    if prefixed is not None:
        rest, (_, check, _) = prefixed
        check(rest, dict(kwargs))
        return
    if name not in _REGISTRY:
        raise _unknown(name)
    _check_kwargs(name, _REGISTRY[name], kwargs)


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build the encoder registered as ``name`` with keyword arguments ``kwargs``.

    Raises ``ValueError`` for an unknown name (the message lists the available ones) and
    ``TypeError`` for keyword arguments the factory does not accept (naming them).
    The returned module maps ``[N, C, H, W]`` to ``[N, module.out_dim]``.
    """
    prefixed = _prefixed(name)
    if prefixed is not None:
        rest, (factory, _, _) = prefixed
        model = factory(rest, **kwargs)
    elif name not in _REGISTRY:
        raise _unknown(name)
    else:
        fn = _REGISTRY[name]
        _check_kwargs(name, fn, kwargs)
        model = fn(**kwargs)
    out_dim = getattr(model, "out_dim", None)
    if not isinstance(model, nn.Module) or not isinstance(out_dim, int) or out_dim <= 0:
        raise TypeError(
            f"factory for {name!r} must return an nn.Module with a positive int `out_dim`"
        )
    return model
