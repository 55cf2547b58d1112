"""ClassBalancedBatchSampler: m images of each of B/m classes per global batch."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from varcon.data.sampling import ClassBalancedBatchSampler, _max_balanced_batches


def labels_of(counts: list[int]) -> torch.Tensor:
    """Class c repeated counts[c] times, interleaved so that indices are not sorted by class."""
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate(counts)])
    return labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))]


def assert_balanced(batch: list[int], labels: torch.Tensor, m: int, per_batch: int) -> None:
    composition = Counter(labels[batch].tolist())
    assert len(composition) == per_batch, composition
    assert set(composition.values()) == {m}, composition
    # each class's m images are contiguous (so whole classes per rank when m | b)
    runs = [labels[batch[i]].item() for i in range(0, len(batch), m)]
    assert all(labels[batch[i]] == labels[batch[i - i % m]] for i in range(len(batch)))
    assert len(set(runs)) == per_batch


def test_every_batch_is_balanced_and_no_image_repeats():
    labels = labels_of([23, 20, 31, 20, 26, 22, 40, 21])  # 8 classes, unequal sizes
    sampler = ClassBalancedBatchSampler(labels, 16, 4, seed=3)  # 4 classes x 4 per batch
    sampler.set_epoch(2)
    batches = list(sampler)
    # K = max{k : sum_c min(floor(n_c/4), k) >= 4k}; groups 5,5,7,5,6,5,10,5 -> 48 // 4 = 12
    assert sampler.batches_per_epoch == len(batches) == len(sampler) == 12
    for batch in batches:
        assert_balanced([i for i, _ in batch], labels, 4, 4)
    items = [i for batch in batches for i, _ in batch]
    assert len(items) == len(set(items)) == 12 * 16
    seeds = [s for batch in batches for _, s in batch]
    assert len(set(seeds)) == len(seeds)


@pytest.mark.parametrize("world, m", [(2, 4), (2, 8), (4, 2)])
def test_ranks_split_the_same_global_batches(world, m):
    """2 ranks: the union of the shares is the 1-rank batch (items and augmentation seeds);
    with m = 8 and 12 rows per rank one class straddles the two ranks."""
    labels = labels_of([30] * 12)
    single = ClassBalancedBatchSampler(labels, 24, m, seed=7)
    shards = [ClassBalancedBatchSampler(labels, 24 // world, m, rank=r, world_size=world,
                                        seed=7) for r in range(world)]
    for s in [single, *shards]:
        s.set_epoch(1)
    assert all(s.batches_per_epoch == single.batches_per_epoch for s in shards)
    per_rank = [list(s) for s in shards]
    full = list(single)
    for b, parts in enumerate(zip(*per_rank, strict=True)):
        assert [i for p in parts for i in p] == full[b]
        assert all(len(p) == 24 // world for p in parts)
        assert_balanced([i for i, _ in full[b]], labels, m, 24 // m)
        if (24 // world) % m == 0:  # whole classes on each rank
            for p in parts:
                counts = Counter(labels[[i for i, _ in p]].tolist())
                assert set(counts.values()) == {m}


def test_resume_mid_epoch_yields_exactly_the_remaining_batches():
    labels = labels_of([17, 25, 19, 30, 22])
    s = ClassBalancedBatchSampler(labels, 4, 2, rank=1, world_size=2, seed=1)
    s.set_epoch(4)
    full = list(s)
    s.set_epoch(4, start_batch=5)
    assert list(s) == full[5:] and len(s) == len(full) - 5
    fresh = ClassBalancedBatchSampler(labels, 4, 2, rank=1, world_size=2, seed=1)
    fresh.set_epoch(4, 5)  # a new process (resumed run) draws the same epoch
    assert list(fresh) == full[5:]


def test_epochs_and_seeds_differ_and_repeat():
    labels = labels_of([12] * 6)
    s = ClassBalancedBatchSampler(labels, 12, 3, seed=0)
    e0, e1 = (s.set_epoch(e) or list(s) for e in (0, 1))
    s.set_epoch(0)
    assert list(s) == e0 and e0 != e1
    other = ClassBalancedBatchSampler(labels, 12, 3, seed=1)
    assert list(other) != e0
    # the leftovers (here 0) and the surplus groups change between epochs: over a few epochs
    # every image is seen
    seen = {i for e in range(4) for b in (s.set_epoch(e) or list(s)) for i, _ in b}
    assert seen == set(range(len(labels)))


def test_imbalanced_classes_epoch_length():
    """One huge class cannot appear twice in a batch: K is limited by the others."""
    labels = labels_of([400, 9, 9, 9, 8])  # groups of 4: 100, 2, 2, 2, 2
    s = ClassBalancedBatchSampler(labels, 12, 4)  # 3 classes per batch
    # k + 4 min(2, k) >= 3k  ->  k <= 4 (not floor(108 / 3) = 36)
    assert s.batches_per_epoch == 4
    batches = list(s)
    assert len(batches) == 4
    for batch in batches:
        assert_balanced([i for i, _ in batch], labels, 4, 3)


@settings(max_examples=40, deadline=None)
@given(counts=st.lists(st.integers(2, 40), min_size=2, max_size=12),
       m=st.integers(1, 4), per_batch=st.integers(1, 6), world=st.sampled_from([1, 2, 3]),
       seed=st.integers(0, 10))
def test_any_class_counts(counts, m, per_batch, world, seed):
    counts = [max(n, m) for n in counts]
    per_batch = min(per_batch, len(counts))
    global_batch = m * per_batch
    if global_batch % world:
        global_batch *= world
        per_batch *= world
        if per_batch > len(counts):
            return
    labels = labels_of(counts)
    groups = torch.tensor(counts) // m
    try:
        samplers = [ClassBalancedBatchSampler(labels, global_batch // world, m, rank=r,
                                              world_size=world, seed=seed)
                    for r in range(world)]
    except ValueError as exc:  # only when not even one batch fits
        assert "cannot fill one batch" in str(exc)
        assert _max_balanced_batches(groups, per_batch) == 0
        return
    k = samplers[0].batches_per_epoch
    # K is the largest feasible number of batches
    assert int(torch.clamp(groups, max=k).sum()) >= k * per_batch
    assert int(torch.clamp(groups, max=k + 1).sum()) < (k + 1) * per_batch
    shares = [list(s) for s in samplers]
    glob = [[i for p in parts for i in p] for parts in zip(*shares, strict=True)]
    assert len(glob) == k
    for batch in glob:
        assert_balanced([i for i, _ in batch], labels, m, per_batch)
    items = [i for batch in glob for i, _ in batch]
    assert len(items) == len(set(items))


@pytest.mark.parametrize("counts, batch, m, world, message", [
    ([10] * 8, 10, 4, 1, r"samples_per_class=4 does not divide the global batch \(10 = 10 "
                         r"per process x 1\): set optim.batch_size to a multiple of 4 "
                         r"\(e.g. 8 or 12\)"),
    ([10] * 8, 5, 4, 2, r"global batch \(10 = 5 per process x 2\)"),
    ([10, 10, 3, 10], 8, 4, 1, r"exceeds the smallest class \(3 images; classes with fewer "
                               r"than 4: \[2\]\): lower data.samples_per_class to at most 3"),
    ([10] * 3, 16, 4, 1, r"needs 4 classes, but the training split has 3: raise "
                         r"data.samples_per_class to at least 6 .* at most 12"),
])
def test_bad_input_is_a_clear_error(counts, batch, m, world, message):
    with pytest.raises(ValueError, match=message):
        ClassBalancedBatchSampler(labels_of(counts), batch, m, world_size=world)
