"""Mixed precision and compilation on the GPU: fp16 with the GradScaler skipping an
overflowing step, bf16, channels_last + torch.compile (+ train.micro_batch)."""

from __future__ import annotations

import pytest
import torch

from short_runs import STEPS, InfGradient, assert_finite, max_diff, record_scaler, train, watch_loss
from varcon.runtime.checkpoint import load_checkpoint


@pytest.fixture
def float32_run(tmp_path_factory: pytest.TempPathFactory,
                device: torch.device) -> dict[str, torch.Tensor]:
    return train(tmp_path_factory.mktemp("fp32"), device, "train.amp=off")


def test_fp16_gradscaler_skips_an_overflowing_step_and_halves_the_scale(tmp_path, monkeypatch,
                                                                        device):
    """Step 1's gradients are infinite (its loss is finite: the engine's own non-finite
    skip does not fire). The GradScaler must skip that optimiser step, halve its scale
    (2^16 -> 2^15) and training must go on with finite weights."""
    overflow_at = 1
    dtypes = watch_loss(monkeypatch,
                        lambda i, f: InfGradient.apply(f) if i == overflow_at else f)
    log = record_scaler(monkeypatch)  # per step: weights changed, scale after update
    weights = train(tmp_path, device, "train.amp=fp16", "train.max_nonfinite_steps=1")
    assert set(dtypes) == {torch.float16}, f"train.amp=fp16: the loss saw features {dtypes}"
    changed = [c for c, _ in log]
    scales = [s for _, s in log]
    assert changed == [i != overflow_at for i in range(STEPS)], \
        f"weights changed per step: {changed}; only step {overflow_at} must be skipped"
    init = 2.0 ** 16
    assert scales == [init] * overflow_at + [init / 2] * (STEPS - overflow_at), \
        f"GradScaler scale after each step: {scales}; expected one halving at step {overflow_at}"
    assert_finite(weights, "fp16 run")
    saved = load_checkpoint(tmp_path / "run")["scaler"]
    assert saved is not None and saved["scale"] == init / 2, f"checkpointed scaler: {saved}"


def test_bf16_autocast_trains_close_to_float32(tmp_path, monkeypatch, device, float32_run):
    dtypes = watch_loss(monkeypatch)
    weights = train(tmp_path, device, "train.amp=bf16")
    assert set(dtypes) == {torch.bfloat16}, f"train.amp=bf16: the loss saw features {dtypes}"
    assert_finite(weights, "bf16 run")
    diff = max_diff(weights, float32_run)
    assert diff < 0.05, f"bf16 weights vs float32 after {STEPS} steps: max difference {diff}"
    assert load_checkpoint(tmp_path / "run")["scaler"] is None, "bf16 needs no scaler state"


def test_auto_is_bf16_on_a_bf16_gpu(monkeypatch, tmp_path, cuda_only):
    dtypes = watch_loss(monkeypatch)
    train(tmp_path, cuda_only, "train.amp=auto", "train.max_steps_per_epoch=1")
    want = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    assert set(dtypes) == {want}, f"train.amp=auto on {torch.cuda.get_device_name()}: {dtypes}"


@pytest.mark.parametrize("micro_batch", [0, 8], ids=["whole-batch", "micro_batch=8"])
def test_channels_last_and_compile_match_eager(tmp_path, device, micro_batch):
    """model.channels_last=true + model.compile=true (inductor) under bf16, with and without
    gradient caching: close to the same run eager and contiguous."""
    common = ("train.amp=bf16", "optim.batch_size=16", f"train.micro_batch={micro_batch}",
              "train.max_steps_per_epoch=3")
    eager = train(tmp_path, device, *common, name="eager")
    torch._dynamo.reset()
    try:
        fast = train(tmp_path, device, *common, "model.channels_last=true",
                     "model.compile=true", name="compiled")
    finally:
        torch._dynamo.reset()
    assert_finite(fast, "channels_last + compile run")
    diff = max_diff(fast, eager)
    assert diff < 0.05, f"channels_last + compile vs eager (bf16): max difference {diff}"
