"""Training survives failures (in-process): signals, non-finite losses, disk errors.

Subprocess tests (SIGTERM, kill -9) are in test_reliability_subprocess.py.
"""

from __future__ import annotations

import errno
import json
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import varcon.engine.state as state_mod
import varcon.runtime.checkpoint.layout as rundir_mod
from varcon.cli.main import main
from varcon.engine.pretrain import TrainingDiverged, TrainingInterrupted, pretrain
from varcon.engine.signals import StopOnSignal
from varcon.runtime.checkpoint import load_checkpoint
from varcon.runtime.config import Config, apply_overrides, config_from_dict, read_yaml
from varcon.runtime.config import resolve_config_path as _resolve

STEPS = 6  # steps per epoch
FAST = [
    "optim.epochs=3", "optim.warmup_epochs=1", "optim.batch_size=32",
    f"train.max_steps_per_epoch={STEPS}", "linear.run_after_pretrain=false",
    "train.progress=off", "train.tau2_every=0",
]


def digits_config(tmp_path: Path, *overrides: str, name: str = "run") -> Config:
    data = read_yaml(_resolve("digits"))
    data["output_dir"] = str(tmp_path / name)
    return config_from_dict(apply_overrides(data, [*FAST, *overrides]))


def records(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def on_loss_call(monkeypatch: pytest.MonkeyPatch,
                 action: Callable[[int, torch.Tensor], torch.Tensor]) -> list[int]:
    """Wrap the training loss: ``action(call_index, loss)`` may replace the loss (e.g. by
    NaN) or do something else at that step (send a signal). Returns the call log."""
    calls: list[int] = []
    real = state_mod.build_loss

    class Wrapped(nn.Module):
        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, *args: Any, **kwargs: Any) -> Any:
            out = self.inner(*args, **kwargs)
            i = len(calls)
            calls.append(i)
            if isinstance(out, tuple):
                return (action(i, out[0]), *out[1:])
            return action(i, out)

    monkeypatch.setattr(state_mod, "build_loss", lambda cfg, n: Wrapped(real(cfg, n)))
    return calls


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, torch.Tensor]:
    """Final weights of an uninterrupted seeded run."""
    tmp = tmp_path_factory.mktemp("reference")
    pretrain(digits_config(tmp))
    return load_checkpoint(tmp / "run")["model"]


# ---------------------------------------------------------------------------- signals


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_saves_at_step_boundary_and_resume_is_exact(tmp_path, monkeypatch, reference,
                                                           sig):
    at = STEPS + 2  # mid-way through epoch 2

    def send(i: int, loss: torch.Tensor) -> torch.Tensor:
        if i == at:
            os.kill(os.getpid(), sig)
        return loss

    calls = on_loss_call(monkeypatch, send)
    cfg = digits_config(tmp_path)
    with pytest.raises(TrainingInterrupted) as info:
        pretrain(cfg)
    assert len(calls) == at + 1  # stopped right after the signalled step
    message = str(info.value)
    assert f"received {sig.name}" in message and "--resume" in message
    state = load_checkpoint(tmp_path / "run")
    assert (state["epoch"], state["step_in_epoch"]) == (1, 3)
    # the previous handler is back (pytest's own SIGINT handling keeps working)
    assert not isinstance(getattr(signal.getsignal(sig), "__self__", None), StopOnSignal)
    monkeypatch.undo()

    cfg.resume = str(tmp_path / "run")
    pretrain(cfg)
    assert same_weights(load_checkpoint(tmp_path / "run")["model"], reference)
    assert [r["epoch"] for r in records(tmp_path / "run")] == [1, 2, 3]


def test_cli_reports_interruption_with_status_143(tmp_path, monkeypatch, capsys):
    on_loss_call(monkeypatch, lambda i, loss: (os.kill(os.getpid(), signal.SIGTERM), loss)[1]
                 if i == 1 else loss)
    code = main(["pretrain", "--output-dir", str(tmp_path / "run"), *FAST])
    err = capsys.readouterr().err
    assert code == 143
    assert err.startswith("interrupted: received SIGTERM") and "--resume" in err
    assert "Traceback" not in err


def test_resume_before_first_checkpoint_starts_over(tmp_path, reference, capsys):
    """kill -9 during epoch 1 leaves a run directory without a checkpoint."""
    cfg = digits_config(tmp_path)
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / f".last.pt.tmp-{12345}").write_bytes(b"torn")
    cfg.resume = str(run)
    pretrain(cfg)
    assert "no checkpoint yet" in capsys.readouterr().out
    assert same_weights(load_checkpoint(run)["model"], reference)


# ------------------------------------------------------------------- non-finite losses


def nan_at(steps: set[int]) -> Callable[[int, torch.Tensor], torch.Tensor]:
    return lambda i, loss: loss * float("nan") if i in steps else loss


def test_nonfinite_steps_are_skipped_and_counted(tmp_path, monkeypatch, capsys):
    bad = {1, 2, STEPS + 4}  # epoch 1 batches 1, 2; epoch 2 batch 4
    on_loss_call(monkeypatch, nan_at(bad))
    pretrain(digits_config(tmp_path, "train.max_nonfinite_steps=3"))
    out = capsys.readouterr().out
    assert "non-finite loss at epoch 1, batch 1: step skipped" in out
    assert "non-finite loss at epoch 1, batch 2: step skipped" in out
    assert "non-finite loss at epoch 2, batch 4: step skipped" in out
    recs = records(tmp_path / "run")
    assert [r["skipped_steps"] for r in recs] == [2, 1, 0]
    assert [r["steps"] for r in recs] == [STEPS - 2, STEPS - 1, STEPS]
    assert all(r["loss"] is not None and r["loss"] == r["loss"] for r in recs)
    state = load_checkpoint(tmp_path / "run")
    assert all(torch.isfinite(v).all() for v in state["model"].values())


def test_skipped_step_leaves_batchnorm_statistics_intact(tmp_path, monkeypatch):
    """NaN produced inside the network (e.g. corrupt input) must not reach the BatchNorm
    running statistics through a skipped step."""
    real = state_mod.build_network_from_spec
    calls = [0]

    def poison(module: nn.Module, args: tuple[torch.Tensor, ...]) -> Any:
        calls[0] += 1
        if calls[0] in (2, 3):
            return (torch.full_like(args[0], float("nan")),)
        return None

    def build(spec: dict[str, Any]) -> nn.Module:
        net = real(spec)
        net.register_forward_pre_hook(poison)
        return net

    monkeypatch.setattr(state_mod, "build_network_from_spec", build)
    pretrain(digits_config(tmp_path, "optim.epochs=2"))
    assert [r["skipped_steps"] for r in records(tmp_path / "run")] == [2, 0]
    state = load_checkpoint(tmp_path / "run")["model"]
    assert any("running_mean" in k for k in state)
    for key, value in state.items():
        assert torch.isfinite(value.float()).all(), key


def test_consecutive_nonfinite_losses_stop_training(tmp_path, monkeypatch):
    k = 4
    start = STEPS + 1  # epoch 2 batch 1, after epoch 1's checkpoint
    on_loss_call(monkeypatch, nan_at(set(range(start, start + 100))))
    with pytest.raises(TrainingDiverged) as info:
        pretrain(digits_config(tmp_path, f"train.max_nonfinite_steps={k}"))
    message = str(info.value)
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    assert f"{k} consecutive non-finite losses (last at epoch 2, batch {1 + k - 1})" in message
    assert "learning rate" in message and "train.amp" in message
    assert f"Last good checkpoint: {last}" in message
    assert load_checkpoint(last)["epoch"] == 1  # epoch 1 is intact and resumable


def test_nonfinite_streak_resets_after_a_good_step(tmp_path, monkeypatch):
    # 2 bad, 1 good, 2 bad with K=3: never 3 in a row, training completes
    on_loss_call(monkeypatch, nan_at({0, 1, 3, 4}))
    pretrain(digits_config(tmp_path, "train.max_nonfinite_steps=3", "optim.epochs=2"))
    assert records(tmp_path / "run")[0]["skipped_steps"] == 4


def test_cli_reports_divergence_with_status_1(tmp_path, monkeypatch, capsys):
    on_loss_call(monkeypatch, nan_at(set(range(1000))))
    code = main(["pretrain", "--output-dir", str(tmp_path / "run"), *FAST,
                 "train.max_nonfinite_steps=2"])
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("error: training diverged: 2 consecutive non-finite losses")
    assert "Last good checkpoint: none" in err and "Traceback" not in err


# ------------------------------------------------------------------------------- disk


@pytest.mark.parametrize("code", [errno.EROFS, errno.ENOSPC], ids=["EROFS", "ENOSPC"])
def test_unwritable_output_dir_fails_before_training(tmp_path, monkeypatch, capsys, code):
    def probe(self: Path, data: bytes) -> int:
        raise OSError(code, os.strerror(code), str(self))

    monkeypatch.setattr(rundir_mod.Path, "write_bytes", probe)
    trained = on_loss_call(monkeypatch, lambda i, loss: loss)
    status = main(["pretrain", "--output-dir", str(tmp_path / "run"), *FAST])
    err = capsys.readouterr().err
    assert status == 2
    assert f"cannot write to the output directory {tmp_path / 'run'}" in err
    assert os.strerror(code) in err and "--output-dir" in err
    assert trained == []  # no step ran


def test_save_failure_mid_run_keeps_previous_checkpoint(tmp_path, monkeypatch, capsys):
    real_save = torch.save
    saves = [0]

    def flaky_save(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        saves[0] += 1
        if saves[0] == 2:  # the end-of-epoch-2 checkpoint
            raise OSError(errno.ENOSPC, "No space left on device")
        real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", flaky_save)
    code = main(["pretrain", "--output-dir", str(tmp_path / "run"), *FAST])
    err = capsys.readouterr().err
    monkeypatch.undo()
    assert code == 2, err
    assert f"could not save checkpoint {tmp_path / 'run' / 'checkpoints' / 'last.pt'} " \
        "(the previous one is intact): No space left on device" in err
    assert "--resume" in err
    assert "Traceback" not in err
    ckpts = tmp_path / "run" / "checkpoints"
    assert load_checkpoint(ckpts / "last.pt")["epoch"] == 1
    assert [p.name for p in ckpts.iterdir()] == ["last.pt"]  # no temporary file left
