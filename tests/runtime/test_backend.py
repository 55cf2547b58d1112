"""One autocast dtype for training and evaluation; process-wide torch flags put back."""

from __future__ import annotations

import pytest
import torch

from varcon.engine.pretrain import pretrain
from varcon.runtime.backend import autocast_dtype, grad_scaler, torch_settings
from varcon.runtime.config import load_config

CPU, GPU = torch.device("cpu"), torch.device("cuda", 0)


@pytest.mark.parametrize("amp", ["auto", "off"])
def test_auto_and_off_are_no_autocast_on_cpu(amp):
    # auto stays off on a CPU: the quickstart (train.amp=auto) is float32, bit for bit
    assert autocast_dtype(amp, CPU) is None


def test_explicit_modes_autocast_on_cpu():
    assert autocast_dtype("bf16", CPU) is torch.bfloat16
    assert autocast_dtype("fp16", CPU) is torch.float16


@pytest.mark.parametrize("amp", ["auto", "off", "bf16", "fp16"])
def test_no_autocast_on_other_devices(amp):
    assert autocast_dtype(amp, torch.device("meta")) is None


@pytest.mark.filterwarnings("ignore:torch.cuda.amp.GradScaler is enabled:UserWarning")
@pytest.mark.parametrize("device", [CPU, GPU], ids=["cpu", "cuda"])
def test_grad_scaler_for_float16_only_and_of_the_device_type(device):
    assert grad_scaler(torch.float16, device).is_enabled() == (
        device.type == "cpu" or torch.cuda.is_available())  # a CUDA scaler needs CUDA
    assert grad_scaler(torch.float16, device)._device == device.type
    for dtype in (None, torch.bfloat16):
        assert not grad_scaler(dtype, device).is_enabled()


@pytest.mark.parametrize("bf16", [True, False], ids=["bf16-gpu", "older-gpu"])
def test_gpu_dtypes(monkeypatch, bf16):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a, **k: "Test GPU")
    assert autocast_dtype("off", GPU) is None
    assert autocast_dtype("fp16", GPU) is torch.float16
    assert autocast_dtype("auto", GPU) is (torch.bfloat16 if bf16 else torch.float16)
    if bf16:
        assert autocast_dtype("bf16", GPU) is torch.bfloat16
    else:  # asked for explicitly and impossible: an error naming the fix, not a silent switch
        with pytest.raises(ValueError, match=r"train\.amp=fp16"):
            autocast_dtype("bf16", GPU)


def test_training_and_evaluation_use_the_same_function():
    import varcon.engine.state as state
    import varcon.evaluation.finetune as finetune
    import varcon.evaluation.session as session

    for module in (state, session, finetune):
        assert module.autocast_dtype is autocast_dtype, module.__name__


def _flags() -> tuple[bool, bool, bool]:
    return (torch.are_deterministic_algorithms_enabled(),
            torch.is_deterministic_algorithms_warn_only_enabled(),
            torch.backends.cudnn.benchmark)


@pytest.mark.parametrize("before", [(False, False, False), (False, False, True),
                                    (True, False, False)])
def test_torch_settings_restore_every_flag(before):
    saved = _flags()
    try:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        torch.backends.cudnn.benchmark = before[2]
        with torch_settings(deterministic=True, device=CPU):
            assert torch.are_deterministic_algorithms_enabled()
            assert torch.backends.cudnn.benchmark is False
        assert _flags() == before
        with torch_settings(deterministic=False, device=GPU):  # no CUDA needed to set flags
            assert torch.backends.cudnn.benchmark is True
        assert _flags() == before
        with pytest.raises(RuntimeError), torch_settings(deterministic=True, device=CPU):
            raise RuntimeError("an error inside the block")
        assert _flags() == before
    finally:
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
        torch.backends.cudnn.benchmark = saved[2]


def test_pretrain_leaves_global_flags_as_it_found_them(tmp_path):
    before = _flags()
    cfg = load_config(None, [f"output_dir={tmp_path / 'run'}", "train.deterministic=true",
                             "optim.epochs=1", "optim.warmup_epochs=0", "optim.batch_size=64",
                             "train.max_steps_per_epoch=1", "linear.run_after_pretrain=false",
                             "train.progress=off", "train.tau2_every=0"])
    pretrain(cfg)
    assert _flags() == before
    assert (tmp_path / "run" / "checkpoints" / "last.pt").is_file()
