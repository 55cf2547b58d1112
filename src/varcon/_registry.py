"""A name -> item registry shared by methods, datasets and evaluation protocols.

Each kind of thing users add (a training method, a dataset, an evaluation protocol) is one
:class:`Registry`: the built-in items register themselves when their package is imported,
a user's own register the same way from their code, and everything that lists or validates
names (the CLI, config validation, ``varcon report``) iterates over the registry instead of
a hard-coded list.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from typing import Generic, TypeVar

__all__ = ["Registry"]

T = TypeVar("T")


class Registry(Generic[T]):
    """Items of one kind by name, in registration order.

    ``kind`` names the kind in error messages ("method", "dataset", "evaluation").
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str, item: T, *, overwrite: bool = False) -> T:
        """Add ``item`` under ``name``; an existing name raises ``ValueError`` unless
        ``overwrite`` (registering the very same item again is a no-op). Returns ``item``."""
        if not isinstance(name, str) or not name or name != name.strip():
            raise ValueError(f"a {self.kind} name must be a non-empty string without "
                             f"surrounding spaces, got {name!r}")
        if name in self._items and not overwrite and self._items[name] is not item:
            raise ValueError(f"{self.kind} {name!r} is already registered; pass "
                             "overwrite=True to replace it")
        self._items[name] = item
        return item

    def unregister(self, name: str) -> None:
        """Remove ``name`` (tests and plugins that register temporarily)."""
        self._items.pop(name, None)

    def get(self, name: str) -> T:
        """The item called ``name``; ``ValueError`` naming the valid choices otherwise."""
        try:
            return self._items[name]
        except (KeyError, TypeError):
            raise ValueError(self.unknown(name)) from None

    def unknown(self, name: object) -> str:
        """The message for an unknown ``name``: the valid names and the closest ones."""
        close = difflib.get_close_matches(str(name), list(self._items), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        return (f"unknown {self.kind} {name!r}{hint}; choose one of "
                f"{', '.join(self._items)}")

    def names(self) -> tuple[str, ...]:
        return tuple(self._items)

    def items(self) -> list[tuple[str, T]]:
        return list(self._items.items())

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._items))

    def __len__(self) -> int:
        return len(self._items)
