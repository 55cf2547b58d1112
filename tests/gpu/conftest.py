"""GPU tests: every test under ``tests/gpu`` is marked ``cuda`` and skipped without CUDA.

Run them on a GPU machine with ``pytest tests/gpu`` (``benchmarks/gpu/run.sh`` does, with a
JUnit report). ``VARCON_GPU_TESTS_DEVICE=cpu pytest tests/gpu`` runs the tests that do not
need CUDA itself (CUDA graphs, NCCL and pinned memory skip) on the CPU: a check of the
tests' own logic on a machine without a GPU, not a GPU test.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

# cuBLAS is deterministic only with a fixed workspace (train.deterministic=true); it reads
# this when its first handle is created, so it is set before any test touches CUDA.
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

_HERE = Path(__file__).resolve().parent
_OVERRIDE = os.environ.get("VARCON_GPU_TESTS_DEVICE", "")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _OVERRIDE:
        reason = None
    elif not torch.cuda.is_available():
        reason = "no CUDA device (tests/gpu runs on a GPU machine: bash benchmarks/gpu/run.sh)"
    else:
        reason = None
    for item in items:
        if _HERE not in Path(str(item.fspath)).resolve().parents:
            continue
        item.add_marker(pytest.mark.cuda)
        if reason:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture
def device() -> torch.device:
    from short_runs import gpu_device

    return gpu_device()


@pytest.fixture
def cuda_only(device: torch.device) -> torch.device:
    """The device, when it is a CUDA device (CUDA graphs, NCCL, pinned memory)."""
    if device.type != "cuda":
        pytest.skip("needs a CUDA device itself")
    return device
