"""Deterministic, resumable batch order with per-sample augmentation seeds.

Every global batch is a contiguous slice of one permutation of the dataset, drawn
from ``(seed, epoch)``; rank r of W takes the r-th of W equal parts. So the global
batches are the same whatever the number of processes, and a run resumed at batch k
of an epoch sees exactly the batches it would have seen.

Each item also carries its own augmentation seed, derived from ``(seed, epoch,
position)``. :class:`varcon.data.TransformedDataset` draws the item's augmentation from
it, so the augmented views do not depend on which batch or DataLoader worker happens to
load the item.
That makes CPU runs repeatable and interrupted runs resumable bit-for-bit.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler

__all__ = ["EpochBatchSampler"]

_SEED_STRIDE = 1_000_003  # a prime: (seed, epoch, position) map to distinct item seeds


class EpochBatchSampler(Sampler[list[tuple[int, int]]]):
    """Yields this rank's batches as lists of ``(index, item_seed)`` pairs.

    Args:
        dataset_size: number of items.
        batch_size: rows per process (the global batch is ``batch_size * world_size``).
        rank, world_size: this process and the number of processes.
        seed: base seed of the run.
        shuffle: permute the items each epoch (False: dataset order).
        drop_last: drop the final incomplete global batch (True for training, so
            every step sees a full batch; with False the last one is split as evenly as
            possible and some ranks may get one row fewer).
    """

    def __init__(
        self,
        dataset_size: int,
        batch_size: int,
        *,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        shuffle: bool = True,
        drop_last: bool = True,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        global_batch = batch_size * world_size
        if drop_last and dataset_size < global_batch:
            raise ValueError(
                f"the batch ({global_batch} = {batch_size} per process x {world_size}) is larger "
                f"than the dataset ({dataset_size} items): lower optim.batch_size to at most "
                f"{dataset_size}"
            )
        self.dataset_size = dataset_size
        self.batch_size = batch_size
        self.rank = rank
        self.world_size = world_size
        self.seed = seed
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.epoch = 0
        self.start_batch = 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Select the epoch's permutation; skip its first ``start_batch`` batches."""
        self.epoch = epoch
        self.start_batch = start_batch

    @property
    def batches_per_epoch(self) -> int:
        global_batch = self.batch_size * self.world_size
        if self.drop_last:
            return self.dataset_size // global_batch
        return -(-self.dataset_size // global_batch)

    def __len__(self) -> int:
        return max(self.batches_per_epoch - self.start_batch, 0)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        if self.shuffle:
            gen = torch.Generator().manual_seed(self.seed * _SEED_STRIDE + self.epoch)
            order = torch.randperm(self.dataset_size, generator=gen).tolist()
        else:
            order = list(range(self.dataset_size))
        global_batch = self.batch_size * self.world_size
        epoch_base = (self.seed * _SEED_STRIDE + self.epoch) * _SEED_STRIDE
        for b in range(self.start_batch, self.batches_per_epoch):
            lo = b * global_batch
            chunk = order[lo : lo + global_batch]
            # Split the global batch into world_size near-equal parts.
            per, extra = divmod(len(chunk), self.world_size)
            start = self.rank * per + min(self.rank, extra)
            stop = start + per + (1 if self.rank < extra else 0)
            yield [(idx, (epoch_base + lo + pos) % (2**63)) for pos, idx in
                   enumerate(chunk[start:stop], start=start)]

