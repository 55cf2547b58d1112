"""Writing a file so that no reader ever sees it half-written (the one place this lives).

``with atomic_path(path) as tmp:`` write ``tmp``; when the block ends without an error ``tmp`` is
renamed over ``path`` (``os.replace`` is atomic on one filesystem), and on any error, a
``KeyboardInterrupt`` included, ``tmp`` is removed and ``path`` keeps its earlier content. A
``kill -9`` can leave a ``.<name>.tmp-<pid>`` file beside ``path``, never a truncated ``path``.
The temporary name carries the process id, so processes writing the same file (ranks sharing a
cache) do not write into each other's temporary file.

This module imports nothing of varcon, so every package may use it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_text"]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, suffix: str = "",
                fsync: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` to write; put it in place when the block ends.

    ``suffix`` ends the temporary name (``".npy"``: ``np.save`` appends one otherwise). With
    ``fsync`` the file and the rename are flushed to disk (checkpoints: survive a power cut).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}{suffix}")
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if fsync:
        with contextlib.suppress(OSError):  # not every filesystem can fsync a directory
            dir_fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`atomic_path`)."""
    atomic_write_bytes(path, text.encode("utf-8"))
