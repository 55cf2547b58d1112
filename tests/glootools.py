"""Run a function in N gloo processes for a test (``from glootools import spawn_gloo``), and
what such a worker does on every rank: join the group (``gloo_group``), take a few SGD steps on
its rows of every global batch (``sgd_steps``).

gloo can abort a process natively while its sockets are torn down at exit ("terminate called
without an active exception", SIGABRT), after the work and its results are complete. That is a
known race in gloo's teardown, not a result of the code under test, and it made CI flaky. So a
run whose process died of a *signal* is started again from scratch in a fresh directory (at most
``attempts`` times, with a warning); a worker that raised a Python exception (an assertion, a
bug in the code under test) fails at once and is never retried. Every attempt starts from
nothing: results of a failed attempt are never read.
"""

from __future__ import annotations

import datetime
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch.multiprocessing.spawn import ProcessExitedException

__all__ = ["gloo_group", "sgd_steps", "spawn_gloo"]


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


@contextmanager
def gloo_group(rank: int, world: int, init_file: str, timeout_s: float = 60.0) -> Iterator[None]:
    """The process group of a ``spawn_gloo`` worker, on one CPU thread per process (two
    processes share this machine's cores). A body that completes waits for every rank before
    the group is closed, so that no rank closes its sockets while another still talks; a
    body that raises closes it at once (the other ranks then fail, not hang, within
    ``timeout_s``)."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=world, timeout=datetime.timedelta(seconds=timeout_s))
    try:
        yield
        dist.barrier()
    finally:
        dist.destroy_process_group()


def sgd_steps(model: torch.nn.Module, loss_fn: torch.nn.Module,
              batches: Sequence[tuple[torch.Tensor, torch.Tensor]], rows: slice,
              lr: float = 0.5) -> torch.Tensor:
    """One SGD step (learning rate ``lr``) per global batch ``(x, labels)``, on this process's
    ``rows`` of it: ``loss_fn(normalize(model(x[rows])), labels[rows])``. ``rows=slice(None)``
    is the single process that holds every row. Returns the losses, shape ``(len(batches),)``."""
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    losses = []
    for x, labels in batches:
        opt.zero_grad()
        loss = loss_fn(F.normalize(model(x[rows]), dim=1), labels[rows])
        loss.backward()
        opt.step()
        losses.append(loss.detach())
    return torch.stack(losses)
