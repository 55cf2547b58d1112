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

:class:`ClassBalancedBatchSampler` gives the same guarantees (same items, same interface)
for batches of ``m`` images of each of ``B / m`` classes.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler

from varcon._text import shorten

__all__ = ["ClassBalancedBatchSampler", "EpochBatchSampler"]

_SEED_STRIDE = 1_000_003  # a prime: (seed, epoch, position) map to distinct item seeds


class _ResumableBatchSampler(Sampler[list[tuple[int, int]]]):
    """What both samplers share: the process layout, ``set_epoch`` resumption, the length of
    what is left of the epoch, and each item's augmentation seed."""

    def __init__(self, batch_size: int, rank: int, world_size: int, seed: int) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size
        self.rank = rank
        self.world_size = world_size
        self.seed = seed
        self.epoch = 0
        self.start_batch = 0

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.world_size

    @property
    def batches_per_epoch(self) -> int:
        raise NotImplementedError

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Select the epoch's draw; skip its first ``start_batch`` batches."""
        self.epoch = epoch
        self.start_batch = start_batch

    def __len__(self) -> int:
        return max(self.batches_per_epoch - self.start_batch, 0)

    def _generator(self) -> torch.Generator:
        """The epoch's random stream, from ``(seed, epoch)``."""
        return torch.Generator().manual_seed(self.seed * _SEED_STRIDE + self.epoch)

    def _with_seeds(self, batch: int, rows: Sequence[int], start: int) -> list[tuple[int, int]]:
        """``(index, item_seed)`` for ``rows`` at positions ``start, start+1, ...`` of global
        batch ``batch``; the seed depends on ``(seed, epoch, position in the epoch)`` only."""
        base = (self.seed * _SEED_STRIDE + self.epoch) * _SEED_STRIDE + batch * self.global_batch
        return [(idx, (base + pos) % (2**63)) for pos, idx in enumerate(rows, start=start)]


class EpochBatchSampler(_ResumableBatchSampler):
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
        super().__init__(batch_size, rank, world_size, seed)
        global_batch = self.global_batch
        if drop_last and dataset_size < global_batch:
            raise ValueError(
                f"the batch ({global_batch} = {batch_size} per process x {world_size}) is larger "
                f"than the dataset ({dataset_size} items): lower optim.batch_size to at most "
                f"{dataset_size}"
            )
        self.dataset_size = dataset_size
        self.shuffle = shuffle
        self.drop_last = drop_last

    @property
    def batches_per_epoch(self) -> int:
        if self.drop_last:
            return self.dataset_size // self.global_batch
        return -(-self.dataset_size // self.global_batch)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        if self.shuffle:
            order = torch.randperm(self.dataset_size, generator=self._generator()).tolist()
        else:
            order = list(range(self.dataset_size))
        for b in range(self.start_batch, self.batches_per_epoch):
            chunk = order[b * self.global_batch : (b + 1) * self.global_batch]
            # Split the global batch into world_size near-equal parts.
            per, extra = divmod(len(chunk), self.world_size)
            start = self.rank * per + min(self.rank, extra)
            stop = start + per + (1 if self.rank < extra else 0)
            yield self._with_seeds(b, chunk[start:stop], start)


class ClassBalancedBatchSampler(_ResumableBatchSampler):
    r"""Global batches of ``m`` images of each of ``P = B / m`` classes (m-per-class sampling).

    Yields this rank's batches as lists of ``(index, item_seed)`` pairs, like
    :class:`EpochBatchSampler`, with the same ``set_epoch(epoch, start_batch)`` resumption and
    the same global batches whatever the number of processes.

    An epoch, drawn from ``(seed, epoch)``:

    1. each class's images are shuffled and cut into ``g_c = floor(n_c / m)`` groups of
       ``m``; the ``n_c mod m`` images left over sit this epoch out (different ones every
       epoch, since the shuffle changes);
    2. the epoch has ``K`` global batches, the largest number such that ``P`` *distinct*
       classes per batch can be filled from the groups without reusing an image::

           K = max { k : sum_c min(g_c, k) >= k P }

       For balanced classes (all ``g_c`` equal) this is ``floor(sum_c g_c / P)``: every image
       but fewer than ``m`` per class plus ``P - 1`` groups is seen once. A class with
       more than ``K`` groups (heavy imbalance) contributes at most one group per batch, so
       its surplus images wait for a later epoch;
    3. the surplus groups (``sum_c min(g_c, K) - K P``) are dropped at random, then batch
       after batch ``P`` classes are drawn without replacement, each with probability
       proportional to the groups it still has; a class with as many groups left as there
       are batches left is always taken (this is what guarantees ``K`` full batches).

    So every global batch holds exactly ``m`` distinct images of each of ``P`` distinct
    classes, and no image appears twice in an epoch. Within the global batch the classes
    are in random order and each class's ``m`` images are contiguous; rank ``r`` of ``W``
    takes rows ``[r b, (r + 1) b)`` (``b`` = ``batch_size`` per process). When ``b`` is a
    multiple of ``m`` every rank holds whole classes (``b / m`` of them); otherwise one
    class's ``m`` images may straddle two ranks. The losses gather the global batch, so
    the batch they see is balanced either way.

    Args:
        labels: class of each item, ``[N]`` integers (e.g. ``dataset.targets``).
        batch_size: rows per process (the global batch is ``B = batch_size * world_size``).
        samples_per_class: ``m``; must divide ``B`` and be at most the smallest class.
        rank, world_size: this process and the number of processes.
        seed: base seed of the run.

    Raises:
        ValueError: ``m`` does not divide ``B``, a class has fewer than ``m`` images, or
            there are fewer than ``P`` classes (the message names the fix).
    """

    def __init__(
        self,
        labels: Sequence[int] | torch.Tensor,
        batch_size: int,
        samples_per_class: int,
        *,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
    ) -> None:
        super().__init__(batch_size, rank, world_size, seed)
        labels = torch.as_tensor(labels, dtype=torch.long).reshape(-1)
        m = samples_per_class
        if m < 1:
            raise ValueError(f"samples_per_class must be >= 1, got {m}")
        global_batch = self.global_batch
        if global_batch % m:
            lo, hi = global_batch // m * m, -(-global_batch // m) * m
            sizes = " or ".join(str(b) for b in (lo, hi) if b > 0)
            raise ValueError(
                f"data.samples_per_class={m} does not divide the global batch "
                f"({global_batch} = {batch_size} per process x {world_size}): set "
                f"optim.batch_size to a multiple of {m} (e.g. {sizes}) or choose "
                f"data.samples_per_class among the divisors of {global_batch}"
            )
        classes, counts = torch.unique(labels, return_counts=True)
        smallest = int(counts.min()) if len(counts) else 0
        if m > smallest:
            names = classes[counts < m].tolist()
            raise ValueError(
                f"data.samples_per_class={m} exceeds the smallest class ({smallest} images; "
                f"classes with fewer than {m}: [{shorten(names, 20)}])"
                f": lower data.samples_per_class to at most {smallest}, or leave those classes "
                "out with data.exclude_classes"
            )
        per_batch = global_batch // m
        if per_batch > len(classes):
            raise ValueError(
                f"a global batch of {global_batch} with data.samples_per_class={m} needs "
                f"{per_batch} classes, but the training split has {len(classes)}: raise "
                f"data.samples_per_class to at least {-(-global_batch // len(classes))} "
                f"(a divisor of {global_batch}) or lower optim.batch_size to at most "
                f"{len(classes) * m}"
            )
        self.labels = labels
        self.samples_per_class = m
        self.classes_per_batch = per_batch
        self._counts = counts
        self._groups = counts // m
        self._batches = _max_balanced_batches(self._groups, per_batch)
        if self._batches == 0:  # only possible with P > 1 and very few images
            raise ValueError(
                f"the training split cannot fill one batch of {per_batch} classes x {m} "
                f"images: lower optim.batch_size (now {global_batch})"
            )

    @property
    def batches_per_epoch(self) -> int:
        """``K = max{k : sum_c min(floor(n_c / m), k) >= k B / m}`` (class docstring)."""
        return self._batches

    def global_batches(self) -> list[list[int]]:
        """The epoch's global batches, ``K`` lists of ``B`` dataset indices (every rank
        computes the same ones; ``__iter__`` yields this rank's share of each)."""
        m, per_batch, k = self.samples_per_class, self.classes_per_batch, self._batches
        gen = self._generator()
        # Each class's items in a random order, classes one after another (stable sort).
        perm = torch.randperm(len(self.labels), generator=gen)
        shuffled = perm[torch.argsort(self.labels[perm], stable=True)]
        starts = torch.cumsum(self._counts, 0) - self._counts
        # Groups to use: at most one per batch from each class, surplus dropped at random.
        left = torch.clamp(self._groups, max=k)
        surplus = int(left.sum()) - k * per_batch
        if surplus:
            owner = torch.repeat_interleave(torch.arange(len(left)), left)
            drop = owner[torch.randperm(len(owner), generator=gen)[:surplus]]
            left -= torch.bincount(drop, minlength=len(left))
        taken = torch.zeros_like(left)
        batches = []
        for remaining in range(k, 0, -1):
            # Invariant: sum(left) = remaining * P and left <= remaining, so the classes
            # with left == remaining (at most P) must be taken now, and enough others exist.
            forced = torch.nonzero(left == remaining).flatten()
            free = per_batch - len(forced)
            chosen = forced
            if free:
                weights = torch.where(left < remaining, left, 0).double()
                drawn = torch.multinomial(weights, free, replacement=False, generator=gen)
                chosen = torch.cat([forced, drawn])
            chosen = chosen[torch.randperm(per_batch, generator=gen)]
            first = starts[chosen] + taken[chosen] * m  # next unused group of each class
            rows = (first[:, None] + torch.arange(m)).flatten()
            batches.append(shuffled[rows].tolist())
            taken[chosen] += 1
            left[chosen] -= 1
        return batches

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        start = self.rank * self.batch_size
        for b, chunk in enumerate(self.global_batches()):
            if b >= self.start_batch:
                yield self._with_seeds(b, chunk[start : start + self.batch_size], start)


def _max_balanced_batches(groups: torch.Tensor, per_batch: int) -> int:
    """Largest ``k`` with ``sum_c min(groups_c, k) >= k * per_batch``.

    ``f(k) = sum_c min(g_c, k) - k P`` is concave with ``f(0) = 0``, so the feasible ``k``
    form an interval ``[0, K]``: binary search. (``K`` batches of ``P`` distinct classes
    exist exactly when ``f(K) >= 0``: Hall's condition for this bipartite assignment.)
    """
    lo, hi = 0, int(groups.sum()) // per_batch
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if int(torch.clamp(groups, max=mid).sum()) >= mid * per_batch:
            lo = mid
        else:
            hi = mid - 1
    return lo
