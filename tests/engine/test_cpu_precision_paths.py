"""The GPU branches of the engine, run on a CPU (CI has no GPU): bf16 and fp16 autocast,
the fp16 GradScaler skipping an overflowing step, uint8 views finished in the step,
``channels_last``, and ``model.compile`` with ``train.micro_batch``.

Each run is the digits quickstart cut to a few steps; ``train.amp=auto`` on a CPU stays
float32 bit for bit (the quickstart's results do not move).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import torch

import short_runs
import varcon.engine.state as state_mod
from short_runs import STEPS, InfGradient, max_diff, record_scaler, watch_loss
from varcon.data import TransformedDataset
from varcon.runtime.checkpoint import load_checkpoint
from varcon.runtime.config import Config

CPU = torch.device("cpu")
DETERMINISTIC = "train.deterministic=true"


def digits_config(tmp_path: Path, *overrides: str, name: str = "run") -> Config:
    return short_runs.digits_config(tmp_path, CPU, DETERMINISTIC, *overrides, name=name)


def train(tmp_path: Path, *overrides: str, name: str = "run") -> dict[str, torch.Tensor]:
    """Final weights of a short digits run on the CPU."""
    return short_runs.train(tmp_path, CPU, DETERMINISTIC, *overrides, name=name)


@pytest.fixture(scope="module")
def float32_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, torch.Tensor]:
    return train(tmp_path_factory.mktemp("fp32"))


def test_auto_is_float32_on_cpu(tmp_path, monkeypatch, float32_run):
    dtypes = watch_loss(monkeypatch)
    weights = train(tmp_path, "train.amp=auto")
    assert set(dtypes) == {torch.float32}, f"train.amp=auto autocast on a CPU: {dtypes}"
    assert max_diff(weights, float32_run) == 0.0, "train.amp=auto changed CPU results"


def test_bf16_is_real_autocast_on_cpu(tmp_path, monkeypatch, float32_run):
    dtypes = watch_loss(monkeypatch)
    weights = train(tmp_path, "train.amp=bf16")
    assert set(dtypes) == {torch.bfloat16}, f"train.amp=bf16 on a CPU gave features {dtypes}"
    assert all(torch.isfinite(w).all() for w in weights.values())
    diff = max_diff(weights, float32_run)
    assert 0.0 < diff < 0.05, f"bf16 weights vs float32: max difference {diff}"
    # a bf16 run keeps no scaler state (bfloat16 needs none)
    assert load_checkpoint(tmp_path / "run")["scaler"] is None


def test_fp16_gradscaler_on_cpu_skips_an_overflowing_step(tmp_path, monkeypatch):
    """fp16 autocast on a CPU with torch.amp.GradScaler("cpu"): step 1's gradients overflow
    (its loss is finite, so the engine's own non-finite skip does not fire); the scaler
    skips the optimiser step, halves its scale, and training goes on."""
    overflow_at = 1
    watch_loss(monkeypatch, lambda i, f: InfGradient.apply(f) if i == overflow_at else f)
    log = record_scaler(monkeypatch)  # per step: weights changed, scale after update
    weights = train(tmp_path, "train.amp=fp16", "train.max_nonfinite_steps=1")
    assert len(log) == STEPS, f"{len(log)} scaler updates for {STEPS} steps"
    changed = [c for c, _ in log]
    scales = [s for _, s in log]
    assert changed == [i != overflow_at for i in range(STEPS)], \
        f"weights changed per step {changed}: only the overflowing step must be skipped"
    init = 2.0 ** 16
    assert scales == [init] * overflow_at + [init / 2] * (STEPS - overflow_at), \
        f"scales {scales}: halved once, at the overflowing step"
    assert all(torch.isfinite(w).all() for w in weights.values())
    saved = load_checkpoint(tmp_path / "run")["scaler"]
    assert saved is not None and saved["scale"] == init / 2, "the scaler's state is saved"


def test_uint8_views_finished_in_the_step_match_float_views(tmp_path, monkeypatch,
                                                            float32_run):
    """The GPU data path on a CPU: workers send uint8 views, the step normalises them
    (``train_set.finish``). The float path rounds nothing, the uint8 path rounds each pixel
    once (<= 0.5/255 before normalisation): the runs stay close, not equal."""
    finished: list[torch.dtype] = []
    real_finish = TransformedDataset.finish

    class U8(TransformedDataset):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["uint8_views"] = True
            super().__init__(*args, **kwargs)

        def finish(self, images: torch.Tensor) -> torch.Tensor:
            finished.append(images.dtype)
            return real_finish(self, images)

    monkeypatch.setattr(state_mod, "TransformedDataset", U8)
    weights = train(tmp_path)
    assert finished == [torch.uint8] * STEPS, f"the step finished {finished}"
    diff = max_diff(weights, float32_run)
    assert diff < 1e-2, f"uint8-view weights vs float views: max difference {diff}"


def test_channels_last_on_cpu_matches_contiguous(tmp_path, float32_run):
    weights = train(tmp_path, "model.channels_last=true")
    diff = max_diff(weights, float32_run)
    assert diff < 1e-4, f"channels_last weights vs contiguous: max difference {diff}"


@pytest.mark.slow
def test_compile_with_micro_batch_on_cpu(tmp_path):
    """torch.compile (inductor, C++ on a CPU) around the network, with gradient caching:
    two steps, close to the same run eager."""
    overrides = ("optim.batch_size=16", "train.micro_batch=8", "train.max_steps_per_epoch=2")
    eager = train(tmp_path, *overrides, name="eager")
    torch._dynamo.reset()
    t0 = time.perf_counter()
    compiled = train(tmp_path, *overrides, "model.compile=true", name="compiled")
    seconds = time.perf_counter() - t0
    torch._dynamo.reset()
    diff = max_diff(compiled, eager)
    assert diff < 1e-4, f"compiled weights vs eager: max difference {diff} ({seconds:.0f} s)"
