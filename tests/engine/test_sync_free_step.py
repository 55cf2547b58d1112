"""The training step never waits for the device between reads.

On a GPU, a host-device synchronisation (``.item()``, ``.tolist()``, ``bool(tensor)``, a copy
to the CPU, an output whose shape depends on values) stops the host from queueing the next
step while the device works. There is no GPU here, so a counting proxy stands in for
``torch.cuda.set_sync_debug_mode("error")`` (which ``tests/gpu`` uses where CUDA exists):
every tensor method or function that synchronises on an accelerator is wrapped to count its
calls during training, except inside the DataLoader (data loading runs before the batch
reaches the device) and at the one call site that is skipped on accelerators (the losses'
CPU-only label-range check). Steps where the host reads the device (every
``train.log_every`` steps and the last of an epoch) may synchronise; every other step must
not, once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils.data import dataloader

import varcon.engine.pretrain as pretrain_mod
from varcon.engine.state import build_run_state
from varcon.engine.step import train_step
from varcon.methods import MethodSpec
from varcon.runtime.config import load_config
from varcon.runtime.distributed import setup_distributed

# (owner, name): what synchronises on an accelerator
SYNCING = [(torch.Tensor, name) for name in (
    "item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__", "__index__",
    "nonzero", "unique", "masked_select", "argwhere")] + [
    (torch, name) for name in ("nonzero", "unique", "masked_select", "argwhere")]
# call sites that never run on an accelerator (guarded by ``device.type == "cpu"``)
ALLOWED_SITES = {("functional.py", "check_inputs")}


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


@pytest.fixture
def counter(monkeypatch: pytest.MonkeyPatch) -> SyncCounter:
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


def digits_config(tmp_path: Path, *overrides: str) -> Any:
    return load_config(None, [
        f"output_dir={tmp_path / 'run'}", "optim.epochs=2", "optim.warmup_epochs=1",
        "optim.batch_size=64", "train.max_steps_per_epoch=7", "train.log_every=3",
        "train.tau2_every=1", "train.progress=lines", "linear.run_after_pretrain=false",
        *overrides])


@pytest.mark.parametrize("overrides", [
    (), ("loss.prototypes=ema",), ("method=supcon",), ("method=ce",),
    ("train.micro_batch=32",), ("optim.optimizer=lars",),
], ids=["varcon", "varcon-ema", "supcon", "ce", "micro-batch", "lars"])
def test_no_synchronisation_between_reads(tmp_path, monkeypatch, counter, overrides):
    real_step = pretrain_mod.train_step
    steps: list[int] = []

    def step(run: Any, *args: Any, **kwargs: Any) -> Any:
        counter.step = len(steps)  # global step: the runs start at 0, no resume
        steps.append(counter.step)
        return real_step(run, *args, **kwargs)

    monkeypatch.setattr(pretrain_mod, "train_step", step)
    cfg = digits_config(tmp_path, *overrides)
    counter.active = True
    pretrain_mod.pretrain(cfg)
    counter.active = False
    assert steps == list(range(14))
    reads = {g for g in steps if g % 3 == 0 or g % 7 == 6}
    quiet = {g: counter.where[g] for g in steps if g not in reads and counter.counts[g]}
    assert not quiet, f"synchronising calls in steps that do not read: {quiet}"
    # the proxy sees synchronisations where they are expected (it is not blind)
    assert all(counter.counts[g] > 0 for g in reads), dict(counter.counts)


def _with_nan_loss(method: MethodSpec) -> MethodSpec:
    def compute(*args: Any) -> Any:
        out = method.compute(*args)
        return out._replace(loss=out.loss * float("nan"))

    return dataclasses.replace(method, compute=compute)


def _state(run: Any) -> list[torch.Tensor]:
    tensors = [*run.net.parameters(), *run.net.buffers(), *run.loss_fn.buffers()]
    tensors += [v for s in run.optimizer.state.values() for v in s.values()
                if isinstance(v, torch.Tensor)]
    return [t.detach().clone() for t in tensors]


def test_a_nonfinite_step_is_undone_exactly_without_reading_the_device(tmp_path, counter):
    cfg = digits_config(tmp_path, "loss.prototypes=ema")
    run = build_run_state(cfg, setup_distributed("cpu"))
    batches = iter(run.loader)
    run.net.train()
    first = train_step(run, run.net, *next(batches))  # creates the momentum buffers
    assert not bool(first.bad)
    before = _state(run)

    good = run.method
    run.method = _with_nan_loss(good)
    counter.active, counter.step = True, 0
    result = train_step(run, run.net, *next(batches))
    counter.active = False
    assert counter.counts[0] == 0, counter.where
    assert bool(result.bad) and result.flags.tolist() == [1.0, 0.0]
    after = _state(run)
    assert len(after) == len(before)
    for a, b in zip(after, before, strict=True):
        assert torch.equal(a, b) or (a.isnan().all() and b.isnan().all())
    # and the next good step moves the weights again
    run.method = good
    train_step(run, run.net, *next(batches))
    assert not all(torch.equal(a, b) for a, b in zip(_state(run), before, strict=True))


def test_a_nonfinite_first_step_leaves_no_optimizer_state(tmp_path):
    """The first step creates the momentum buffers: skipped, it must not leave NaN ones."""
    run = build_run_state(digits_config(tmp_path), setup_distributed("cpu"))
    run.method = _with_nan_loss(run.method)
    params = [p.detach().clone() for p in run.net.parameters()]
    run.net.train()
    result = train_step(run, run.net, *next(iter(run.loader)))
    assert bool(result.bad)
    assert not any(s for s in run.optimizer.state.values())
    assert all(torch.equal(p, q) for p, q in zip(run.net.parameters(), params, strict=True))
