"""Checkpoints and evaluation on the GPU: a checkpoint written on the GPU loads on a CPU,
resume is bit-exact with ``train.deterministic=true`` (CUDA RNG state included), and
evaluation features under bf16 autocast stay close to float32's."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import varcon
from short_runs import (
    STEPS,
    assert_finite,
    digits_config,
    gpu_device,
    max_diff,
    train,
    watch_loss,
)
from varcon.engine.pretrain import TrainingInterrupted, pretrain
from varcon.evaluation.features import extract_features
from varcon.models import build_network
from varcon.runtime.checkpoint import load_checkpoint

DETERMINISTIC = ("train.deterministic=true", "optim.epochs=2")


@pytest.fixture(scope="module")
def gpu_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("gpu_run")
    train(tmp, gpu_device(), "train.amp=bf16")
    return tmp / "run"


def test_checkpoint_written_on_the_gpu_loads_on_a_cpu(gpu_run, device):
    state = load_checkpoint(gpu_run)
    devices = {v.device.type for v in state["model"].values()}
    assert devices == {"cpu"}, f"load_checkpoint gave tensors on {devices}"
    if device.type == "cuda":
        assert "cuda" in state["rng"], f"no CUDA RNG state in the checkpoint: {list(state['rng'])}"
    on_cpu = varcon.load_encoder(gpu_run, map_location="cpu")
    on_gpu = varcon.load_encoder(gpu_run, map_location=device)
    assert {p.device.type for p in on_cpu.parameters()} == {"cpu"}
    assert {p.device.type for p in on_gpu.parameters()} == {device.type}
    images = torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a = on_cpu(images)
        b = on_gpu(images.to(device)).cpu()
    err = float((a - b).abs().max() / a.abs().max())
    assert err < 1e-4, f"encoder outputs, CPU vs GPU copy of one checkpoint: relative error {err}"


def test_evaluation_features_in_bf16_are_close_to_float32(device):
    torch.manual_seed(0)
    net = build_network("varcon", "resnet18", num_classes=10, in_channels=3,
                        image_size=32).to(device)
    images = torch.randn(64, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():  # BatchNorm running statistics of real activations
        net.train()
        for _ in range(3):
            net(images.to(device))
    batches = [(images[i:i + 32], torch.zeros(32, dtype=torch.long)) for i in (0, 32)]
    fp32, _ = extract_features(net.encoder, batches, device=device)
    bf16, _ = extract_features(net.encoder, batches, device=device, amp_dtype=torch.bfloat16)
    assert bf16.dtype == torch.float32 and bf16.shape == fp32.shape == (64, 512)
    cos = F.cosine_similarity(bf16, fp32, dim=1)
    assert float(cos.min()) > 0.99, f"bf16 vs float32 features: min cosine {float(cos.min())}"
    assert float(cos.mean()) > 0.995, f"bf16 vs float32 features: mean cosine {float(cos.mean())}"


@pytest.fixture(scope="module")
def deterministic_reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, torch.Tensor]:
    return train(tmp_path_factory.mktemp("reference"), gpu_device(), *DETERMINISTIC)


def test_deterministic_runs_repeat_bit_for_bit(tmp_path, device, deterministic_reference):
    """The premise of the resume test: two uninterrupted deterministic runs are equal."""
    again = train(tmp_path, device, *DETERMINISTIC)
    diff = max_diff(again, deterministic_reference)
    assert diff == 0.0, (f"two train.deterministic=true runs differ by {diff}: a "
                         "non-deterministic CUDA kernel (see the run's warnings)")


def test_resume_after_sigterm_is_bit_exact(tmp_path, monkeypatch, device,
                                           deterministic_reference):
    at = STEPS + 1  # in epoch 2

    def send(i: int, features: torch.Tensor) -> torch.Tensor:
        if i == at:
            os.kill(os.getpid(), signal.SIGTERM)
        return features

    watch_loss(monkeypatch, send)
    cfg = digits_config(tmp_path, device, *DETERMINISTIC)
    with pytest.raises(TrainingInterrupted):
        pretrain(cfg)
    state = load_checkpoint(tmp_path / "run")
    where = (state["epoch"], state["step_in_epoch"])
    assert (1, 0) < where < (2, 0), f"interrupted checkpoint at (epochs done, step) {where}"
    monkeypatch.undo()
    cfg.resume = str(tmp_path / "run")
    pretrain(cfg)
    resumed = load_checkpoint(tmp_path / "run")["model"]
    assert_finite(resumed, "resumed run")
    diff = max_diff(resumed, deterministic_reference)
    assert diff == 0.0, f"resumed run vs uninterrupted: max difference {diff}"
