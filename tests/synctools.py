"""A counting proxy of host-device synchronisations, for CPU tests (``from synctools import
sync_counter``).

On a GPU, a synchronisation (``.item()``, ``.tolist()``, ``bool(tensor)``, a copy to the CPU,
an output whose shape depends on values) stops the host from queueing work while the device
runs; ``torch.cuda.set_sync_debug_mode("error")`` catches them there (``tests/gpu``). Here
every tensor method or function that synchronises on an accelerator is wrapped to count its
calls while the counter is active, except inside the DataLoader (data loading runs before
the batch reaches the device) and at call sites that never run on an accelerator.
"""

from __future__ import annotations

import contextlib
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils.data import dataloader

__all__ = ["SyncCounter", "install_sync_counter"]

# (owner, name): what synchronises on an accelerator
SYNCING = [(torch.Tensor, name) for name in (
    "item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__", "__index__",
    "nonzero", "unique", "masked_select", "argwhere")] + [
    (torch, name) for name in ("nonzero", "unique", "masked_select", "argwhere")]
# call sites that never run on an accelerator (guarded by ``device.type == "cpu"``)
ALLOWED_SITES = {("functional.py", "check_inputs"), ("varcon_ssl.py", "varcon_ssl_loss")}


class SyncCounter:
    """Counts syncing calls while ``active`` and not paused, per step."""

    def __init__(self) -> None:
        self.active = False
        self.paused = 0
        self.step: int | None = None
        self.counts: Counter[int] = Counter()
        self.where: dict[int, list[str]] = {}

    def hit(self, name: str) -> None:
        if not self.active or self.paused or self.step is None:
            return
        frame = sys._getframe(2)
        site = (Path(frame.f_code.co_filename).name, frame.f_code.co_name)
        if site in ALLOWED_SITES:
            return
        self.counts[self.step] += 1
        self.where.setdefault(self.step, []).append(f"{name} in {site[0]}:{site[1]}")

    @contextlib.contextmanager
    def pause(self) -> Iterator[None]:
        self.paused += 1
        try:
            yield
        finally:
            self.paused -= 1


def install_sync_counter(monkeypatch: pytest.MonkeyPatch) -> SyncCounter:
    """Wrap the synchronising calls (undone by ``monkeypatch``); returns the counter."""
    c = SyncCounter()
    for owner, name in SYNCING:
        real = getattr(owner, name)

        def wrapper(*args: Any, _real: Any = real, _name: str = name, **kwargs: Any) -> Any:
            c.hit(_name)
            with c.pause():  # a syncing call made by another one counts once
                return _real(*args, **kwargs)

        monkeypatch.setattr(owner, name, wrapper)
    real_next = dataloader._BaseDataLoaderIter.__next__

    def next_batch(self: Any) -> Any:
        with c.pause():
            return real_next(self)

    monkeypatch.setattr(dataloader._BaseDataLoaderIter, "__next__", next_batch)
    return c


