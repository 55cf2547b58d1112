"""The probe and fine-tuning loop reads the device every ``train.log_every`` steps, not every
step (counting proxy: ``tests/synctools.py``), with the same history as before."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import varcon.evaluation.supervised as supervised
from synctools import install_sync_counter
from varcon.cli.main import main
from varcon.evaluation.session import eval_session
from varcon.evaluation.supervised import AugmentedTraining, train_on_augmented_images

TINY = ["optim.epochs=1", "optim.warmup_epochs=0", "optim.batch_size=64",
        "train.max_steps_per_epoch=2", "linear.run_after_pretrain=false",
        "train.progress=off", "train.tau2_every=0"]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("supervised-sync") / "run"
    assert main(["pretrain", "--output-dir", str(path), *TINY]) == 0
    return path


def test_no_synchronisation_between_reads(run, monkeypatch):
    counter = install_sync_counter(monkeypatch)
    steps: list[int] = []
    real_apply = supervised.WarmupCosine.apply

    def apply(self, optimizer, step):  # the loop's first call in each step
        counter.step = step
        steps.append(step)
        return real_apply(self, optimizer, step)

    monkeypatch.setattr(supervised.WarmupCosine, "apply", apply)
    settings = AugmentedTraining(epochs=1, batch_size=64, lr=0.1, warmup_epochs=0,
                                 augment="linear", seed=0, desc="probe", lr_hint="lower lr")
    with eval_session(str(run), ["data.num_workers=0", "train.progress=off",
                                 "train.log_every=4"], None) as session:
        torch.manual_seed(0)
        head = torch.nn.Linear(session.net.out_dim, session.num_classes)

        def forward(images):
            with torch.no_grad():
                feats = session.net.encode(images)
            return head(feats)

        optimizer = torch.optim.SGD(head.parameters(), lr=0.1, momentum=0.9)
        counter.active = True
        history = train_on_augmented_images(session, forward, optimizer, settings)
        counter.active = False
    last = len(steps) - 1
    reads = {s for s in steps if s % 4 == 0 or s == last}
    assert len(steps) > 8
    quiet = {s: counter.where[s] for s in steps if s not in reads and counter.counts[s]}
    assert not quiet, f"synchronising calls in steps that do not read: {quiet}"
    assert all(counter.counts[s] > 0 for s in reads)
    assert len(history["train_loss"]) == 1 and 0 < history["train_top1"][0] <= 100
