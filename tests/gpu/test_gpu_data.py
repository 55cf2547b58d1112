"""The GPU data path: uint8 views normalised on the device (``TransformedDataset.finish``)
equal the CPU's, and the engine's loader (workers, shared-memory collate, pinned memory)."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader

from varcon.data import (
    DatasetInfo,
    MultiView,
    SimAugment,
    TensorImageDataset,
    TransformedDataset,
)
from varcon.data.sampling import EpochBatchSampler

MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)  # CIFAR-10's


def dataset(n: int = 24) -> TransformedDataset:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
    info = DatasetInfo("synthetic", 4, ["a", "b", "c", "d"], 3, 32, MEAN, STD)
    ds = TensorImageDataset(images, torch.arange(n) % 4, info)
    return TransformedDataset(ds, MultiView(SimAugment(32, mean=MEAN, std=STD), n_views=2),
                              uint8_views=True)


def ulps(got: torch.Tensor, want: torch.Tensor) -> float:
    """Largest difference in units of the last place of ``want`` (float32)."""
    spacing = (torch.nextafter(want, torch.full_like(want, float("inf"))) - want).abs()
    return float(((got - want).abs() / spacing).max())


def test_uint8_views_finished_on_the_device_equal_the_cpu(device):
    train_set = dataset()
    views = torch.stack([train_set[(i, 100 + i)][0] for i in range(8)])  # [8, 2, 3, 32, 32]
    assert views.dtype == torch.uint8, f"uint8_views gave {views.dtype}"
    on_cpu = train_set.finish(views)
    on_device = train_set.finish(views.to(device, non_blocking=True))
    assert on_device.device.type == device.type and on_device.dtype == torch.float32
    err = ulps(on_device.cpu(), on_cpu)
    assert err <= 1.0, f"device normalisation differs from the CPU's by {err} ulp"
    # and equal to the float path up to the uint8 rounding (<= 0.5/255 before normalising)
    float_set = TransformedDataset(train_set.dataset, train_set.transform)
    floats = torch.stack([float_set[(i, 100 + i)][0] for i in range(8)])
    gap = float((on_device.cpu() - floats).abs().max())
    assert gap <= 0.5 / 255 / min(STD) + 1e-5, f"uint8 vs float views: {gap}"


def test_engine_loader_pins_shared_memory_batches(cuda_only):
    """Workers, ``TransformedDataset.collate`` and ``pin_memory=True`` as the engine builds
    them on a GPU: pinned uint8 batches, equal to the batches of a plain loader."""
    train_set = dataset()
    sampler = EpochBatchSampler(len(train_set), 8, seed=3)
    pinned = DataLoader(train_set, batch_sampler=sampler, num_workers=2, pin_memory=True,
                        collate_fn=TransformedDataset.collate)
    plain = DataLoader(train_set, batch_sampler=sampler, collate_fn=TransformedDataset.collate)
    got = list(pinned)
    want = list(plain)
    assert len(got) == len(want) == 3
    for (gv, gy), (wv, wy) in zip(got, want, strict=True):
        assert gv.is_pinned(), "pin_memory=True gave an unpinned batch"
        assert gv.dtype == torch.uint8 and torch.equal(gv, wv) and torch.equal(gy, wy)
        x = train_set.finish(gv.to(cuda_only, non_blocking=True))
        assert ulps(x.cpu(), train_set.finish(wv)) <= 1.0
