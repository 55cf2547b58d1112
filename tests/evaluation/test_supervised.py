"""The supervised loop on augmented images (``varcon.evaluation.supervised``), shared by the
augmented linear probe and fine-tuning: it trains, follows the warm-up + cosine schedule with
each group's ``lr_scale``, honours ``drop_last`` and autocast, and stops on a non-finite loss
with an error that names the setting to lower, through both commands."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from clitools import assert_clean_error, run_cli
from varcon.cli.main import main
from varcon.evaluation.finetune import FinetuneDiverged
from varcon.evaluation.session import eval_session
from varcon.evaluation.supervised import (
    AugmentedTraining,
    SupervisedDiverged,
    train_on_augmented_images,
)
from varcon.runtime.schedule import WarmupCosine

TINY = ["optim.epochs=1", "optim.warmup_epochs=0", "optim.batch_size=64",
        "train.max_steps_per_epoch=4", "linear.run_after_pretrain=false",
        "train.progress=off", "train.tau2_every=0", "data.num_workers=0"]
EVAL = ["data.num_workers=0", "train.progress=off"]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("supervised") / "run"
    assert main(["pretrain", "--output-dir", str(path), *TINY]) == 0
    return path


def _settings(**changes) -> AugmentedTraining:
    base = dict(epochs=2, batch_size=128, lr=0.5, warmup_epochs=1, augment="linear", seed=3,
                desc="probe", lr_hint="lower probe.lr")
    return AugmentedTraining(**{**base, **changes})


def _linear_on_encoder(session) -> tuple[nn.Linear, object]:
    torch.manual_seed(0)
    head = nn.Linear(session.net.out_dim, session.num_classes)

    def forward(images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            feats = session.net.encode(images)
        return head(feats)

    return head, forward


class _LrRecorder(torch.optim.SGD):
    """SGD that records every group's learning rate at every step."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.seen: list[list[float]] = []

    def step(self, closure=None):
        self.seen.append([g["lr"] for g in self.param_groups])
        return super().step(closure)


def test_loop_trains_and_reports_one_history_entry_per_epoch(run, tmp_path):
    with eval_session(run, EVAL, tmp_path) as session:
        head, forward = _linear_on_encoder(session)
        before = head.weight.detach().clone()
        optimizer = torch.optim.SGD(head.parameters(), lr=0.5, momentum=0.9)
        history = train_on_augmented_images(session, forward, optimizer,
                                            _settings(epochs=4, warmup_epochs=0))
    assert set(history) == {"train_loss", "train_top1"}
    assert len(history["train_loss"]) == len(history["train_top1"]) == 4
    assert all(0.0 <= acc <= 100.0 for acc in history["train_top1"])
    assert history["train_loss"][-1] < history["train_loss"][0]  # it learns
    assert not torch.equal(before, head.weight)


def test_loop_follows_the_schedule_with_each_groups_scale(run, tmp_path):
    with eval_session(run, EVAL, tmp_path) as session:
        head, forward = _linear_on_encoder(session)
        n_train = len(session.data.dataset)
        groups = [{"params": [head.weight], "lr_scale": 1.0},
                  {"params": [head.bias], "lr_scale": 0.25}]
        optimizer = _LrRecorder(groups, lr=0.5)
        s = _settings(batch_size=100, drop_last=True)
        train_on_augmented_images(session, forward, optimizer, s)
    steps = n_train // 100  # drop_last: no remainder batch
    assert len(optimizer.seen) == s.epochs * steps
    schedule = WarmupCosine(s.lr, s.epochs * steps, s.warmup_epochs * steps)
    for t, (weight_lr, bias_lr) in enumerate(optimizer.seen):
        assert weight_lr == pytest.approx(schedule(t))
        assert bias_lr == pytest.approx(0.25 * schedule(t))


def test_loop_keeps_the_remainder_batch_unless_told(run, tmp_path):
    with eval_session(run, EVAL, tmp_path) as session:
        n_train = len(session.data.dataset)
        head, forward = _linear_on_encoder(session)
        optimizer = _LrRecorder(head.parameters(), lr=0.1)
        train_on_augmented_images(session, forward, optimizer, _settings(epochs=1,
                                                                         batch_size=100))
    assert n_train % 100 != 0  # otherwise this test tells nothing
    assert len(optimizer.seen) == n_train // 100 + 1


def test_loop_runs_the_forward_pass_under_autocast(run, tmp_path):
    dtypes: list[torch.dtype] = []
    with eval_session(run, EVAL, tmp_path) as session:
        head, inner = _linear_on_encoder(session)

        def forward(images: torch.Tensor) -> torch.Tensor:
            logits = inner(images)
            dtypes.append(logits.dtype)
            return logits

        optimizer = torch.optim.SGD(head.parameters(), lr=0.1)
        history = train_on_augmented_images(session, forward, optimizer, _settings(epochs=1),
                                            amp_dtype=torch.bfloat16)
    assert dtypes and set(dtypes) == {torch.bfloat16}
    assert all(torch.isfinite(torch.tensor(history["train_loss"])))
    assert head.weight.dtype == torch.float32  # autocast, not a cast of the parameters


def test_non_finite_loss_stops_with_the_setting_to_lower(run, tmp_path):
    with eval_session(run, EVAL, tmp_path) as session:
        head, forward = _linear_on_encoder(session)
        optimizer = torch.optim.SGD(head.parameters(), lr=float("inf"))
        with pytest.raises(SupervisedDiverged) as info:
            train_on_augmented_images(session, forward, optimizer,
                                      _settings(lr=float("inf"), warmup_epochs=0))
    message = str(info.value)
    assert message.startswith("probe loss is ") and "lower probe.lr" in message
    assert "epoch 1, step " in message


def test_finetune_divergence_is_a_clean_error(run, capsys):
    # a random head: no probe is trained (and written into run/eval) first
    code, _, err = run_cli(capsys, "finetune", "--checkpoint", run, "finetune.epochs=2",
                           "finetune.lr=.inf", "finetune.warmup_epochs=0",
                           "finetune.head_init=scratch", *EVAL)
    assert code != 0
    assert_clean_error(err, "finetune loss is", "lower finetune.lr (now inf)",
                       "finetune.encoder_lr_scale")
    assert issubclass(FinetuneDiverged, SupervisedDiverged)
    assert not (run / "eval" / "finetune.json").exists()


def test_augmented_linear_probe_divergence_is_a_clean_error(run, capsys):
    # an earlier probe (fine-tuning trains one first) must be left as it was
    result = run / "eval" / "linear.json"
    before = result.read_bytes() if result.exists() else None
    code, _, err = run_cli(capsys, "linear", "--checkpoint", run, "linear.augment=linear",
                           "linear.epochs=2", "linear.lr=.inf", "linear.warmup_epochs=0", *EVAL)
    assert code != 0
    assert_clean_error(err, "linear loss is", "lower linear.lr (now inf)")
    assert (result.read_bytes() if result.exists() else None) == before
