"""Tiny varcon checkpoints without training, for tests (``from ckpttools import ...``).

:func:`write_checkpoint` writes what ``varcon pretrain`` writes (``format``, ``model``,
``optimizer``, ``network`` spec, ``config``, ``epoch``) for a randomly initialised network
whose BatchNorm running statistics are perturbed, so that eval mode visibly matters.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from varcon.models import build_network_from_spec, network_spec
from varcon.runtime.config import config_from_dict, config_to_dict

__all__ = ["write_checkpoint"]


def write_checkpoint(
    path: str | Path,
    *,
    encoder: str = "small_cnn",
    method: str = "varcon",
    dataset: str = "digits",
    num_classes: int = 10,
    in_channels: int = 1,
    image_size: int = 8,
    encoder_kwargs: dict[str, Any] | None = None,
    mean: list[float] | None = None,
    std: list[float] | None = None,
    config: dict[str, Any] | None = None,
    seed: int = 0,
) -> Path:
    """Write ``path`` (a file, or ``path/checkpoints/last.pt`` when ``path`` has no suffix)
    and return the checkpoint file."""
    path = Path(path)
    file = path if path.suffix else path / "checkpoints" / "last.pt"
    file.parent.mkdir(parents=True, exist_ok=True)
    mean = mean or [0.3053] * in_channels
    std = std or [0.3758] * in_channels
    spec = network_spec(method, encoder, num_classes=num_classes, in_channels=in_channels,
                        image_size=image_size, encoder_kwargs=encoder_kwargs, mean=mean,
                        std=std)
    torch.manual_seed(seed)
    net = build_network_from_spec(spec)
    with torch.no_grad():
        for name, buf in net.named_buffers():
            if name.endswith("running_mean"):
                buf.normal_(0, 0.1)
            elif name.endswith("running_var"):
                buf.uniform_(0.5, 1.5)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    for p in net.parameters():  # zero gradients: momentum buffers, weights unchanged
        p.grad = torch.zeros_like(p)
    optimizer.step()  # an optimizer state with momentum buffers, as training leaves
    cfg = {"name": "tiny", "method": method,
           "data": {"dataset": dataset, "num_workers": 0},
           "model": {"encoder": encoder, "kwargs": dict(encoder_kwargs or {})},
           "train": {"progress": "off", "device": "cpu"}}
    for section, values in (config or {}).items():
        cfg.setdefault(section, {}).update(values)
    state = {
        "format": "varcon", "format_version": 1, "model": net.state_dict(),
        "optimizer": optimizer.state_dict(), "scaler": None, "epoch": 3, "step_in_epoch": 0,
        "network": spec, "config": config_to_dict(config_from_dict(cfg)),
    }
    torch.save(state, file)
    return file
