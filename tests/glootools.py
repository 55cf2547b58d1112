"""Run a function in N gloo processes for a test (``from glootools import spawn_gloo``).

gloo can abort a process natively while its sockets are torn down at exit ("terminate called
without an active exception", SIGABRT), after the work and its results are complete. That is a
known race in gloo's teardown, not a result of the code under test, and it made CI flaky. So a
run whose process died of a *signal* is started again from scratch in a fresh directory (at most
``attempts`` times, with a warning); a worker that raised a Python exception (an assertion, a
bug in the code under test) fails at once and is never retried. Every attempt starts from
nothing: results of a failed attempt are never read.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import torch.multiprocessing as mp
from torch.multiprocessing.spawn import ProcessExitedException

__all__ = ["spawn_gloo"]


def spawn_gloo(worker: Callable[..., None], world: int, root: Path, *args: object,
               attempts: int = 3) -> Path:
    """Run ``worker(rank, world, init_file, out_dir, *args)`` in ``world`` processes.

    ``worker`` must be a module-level function (it is pickled by ``mp.spawn``) that joins the
    group with ``init_method=f"file://{init_file}"`` and writes its results under ``out_dir``.
    Returns the ``out_dir`` of the attempt that succeeded.
    """
    for attempt in range(1, attempts + 1):
        out_dir = Path(root) / f"attempt{attempt}"
        out_dir.mkdir(parents=True)
        try:
            mp.spawn(worker, args=(world, str(out_dir / "pg_init"), str(out_dir), *args),
                     nprocs=world, join=True)
            return out_dir
        except ProcessExitedException as exc:
            if exc.signal_name is None or attempt == attempts:
                raise
            warnings.warn(f"gloo process died of {exc.signal_name} (attempt {attempt} of "
                          f"{attempts}); starting again in a fresh directory", stacklevel=2)
    raise AssertionError("unreachable")
