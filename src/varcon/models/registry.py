"""Name -> encoder-factory registry.

A factory is any callable ``fn(**kwargs) -> nn.Module`` whose result has an integer
``out_dim`` attribute: the encoder maps images ``[N, C, H, W]`` to features ``[N, out_dim]``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

__all__ = ["check_model_kwargs", "create_model", "list_models", "register_model"]

Factory = Callable[..., nn.Module]
F = TypeVar("F", bound=Factory)

_REGISTRY: dict[str, Factory] = {}


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


def list_models() -> list[str]:
    """Sorted names of all registered encoders."""
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
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(list_models())}")
    _check_kwargs(name, _REGISTRY[name], kwargs)


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build the encoder registered as ``name`` with keyword arguments ``kwargs``.

    Raises ``ValueError`` for an unknown name (the message lists the available ones) and
    ``TypeError`` for keyword arguments the factory does not accept (naming them).
    The returned module maps ``[N, C, H, W]`` to ``[N, module.out_dim]``.
    """
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(list_models())}")
    fn = _REGISTRY[name]
    _check_kwargs(name, fn, kwargs)
    model = fn(**kwargs)
    out_dim = getattr(model, "out_dim", None)
    if not isinstance(model, nn.Module) or not isinstance(out_dim, int) or out_dim <= 0:
        raise TypeError(
            f"factory for {name!r} must return an nn.Module with a positive int `out_dim`"
        )
    return model
