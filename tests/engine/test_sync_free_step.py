"""The training step never waits for the device between reads.

There is no GPU here, so a counting proxy of synchronising calls (``tests/synctools.py``)
stands in for ``torch.cuda.set_sync_debug_mode("error")`` (``tests/gpu`` uses that where
CUDA exists). Steps where the host reads the device (every ``train.log_every`` steps and the
last of an epoch) may synchronise; every other step must not, once.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import torch

import varcon.engine.pretrain as pretrain_mod
from synctools import SyncCounter, install_sync_counter
from varcon.engine.state import build_run_state
from varcon.engine.step import train_step
from varcon.methods import MethodSpec
from varcon.runtime.config import load_config
from varcon.runtime.distributed import setup_distributed


@pytest.fixture
def counter(monkeypatch: pytest.MonkeyPatch) -> SyncCounter:
    return install_sync_counter(monkeypatch)


def digits_config(tmp_path: Path, *overrides: str) -> Any:
    return load_config(None, [
        f"output_dir={tmp_path / 'run'}", "optim.epochs=2", "optim.warmup_epochs=1",
        "optim.batch_size=64", "train.max_steps_per_epoch=7", "train.log_every=3",
        "train.tau2_every=1", "train.progress=lines", "linear.run_after_pretrain=false",
        *overrides])


@pytest.mark.parametrize("overrides", [
    (), ("loss.prototypes=ema",), ("method=supcon",), ("method=ce",),
    ("train.micro_batch=32",), ("optim.optimizer=lars",), ("method=simclr",),
    ("method=varcon_ssl", "ssl.num_prototypes=32", "data.labeled_fraction=0.2"),
], ids=["varcon", "varcon-ema", "supcon", "ce", "micro-batch", "lars", "simclr", "varcon_ssl"])
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
