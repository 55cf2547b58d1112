"""Text helpers for messages, importable from every sub-package (no varcon imports).

:func:`shorten` keeps a message that lists the user's items (class folders, files, runs)
readable however many there are: the first ``limit`` items, then ``... and M more``.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["SHOWN", "shorten"]

SHOWN = 10  # items a message lists before "... and M more"


def shorten(items: Iterable[object], limit: int = SHOWN, sep: str = ", ") -> str:
    """``items`` (each as ``str``) joined by ``sep``; past ``limit`` items, the first
    ``limit`` then ``... and M more``. ``shorten(["a", "b", "c"], 2)`` -> ``"a, b, ... and 1
    more"``; no items give ``""``."""
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    shown: list[str] = []
    more = 0
    for item in items:
        if len(shown) < limit:
            shown.append(str(item))
        else:
            more += 1
    if more:
        shown.append(f"... and {more} more")
    return sep.join(shown)
