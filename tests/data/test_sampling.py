import pytest
import torch

from varcon.data import MultiView, TransformedDataset
from varcon.data.sampling import EpochBatchSampler


def _batches(**kw):
    return list(EpochBatchSampler(**kw))


def test_global_batches_do_not_depend_on_world_size():
    single = _batches(dataset_size=50, batch_size=12, seed=3)
    ranks = [_batches(dataset_size=50, batch_size=6, rank=r, world_size=2, seed=3) for r in (0, 1)]
    assert len(single) == 4 and all(len(b) == 12 for b in single)
    for b, (r0, r1) in enumerate(zip(*ranks, strict=True)):
        assert r0 + r1 == single[b]


def test_epochs_differ_and_repeat():
    s = EpochBatchSampler(40, 8, seed=0)
    s.set_epoch(0)
    e0 = list(s)
    s.set_epoch(1)
    e1 = list(s)
    s.set_epoch(0)
    assert list(s) == e0 and e0 != e1
    seeds = [seed for batch in e0 + e1 for _, seed in batch]
    assert len(set(seeds)) == len(seeds)  # every item of every epoch has its own seed
    idx = sorted(i for batch in e0 for i, _ in batch)
    assert idx == sorted(set(idx)) and len(idx) == 40


def test_resume_skips_batches():
    s = EpochBatchSampler(40, 8, seed=1)
    s.set_epoch(2)
    full = list(s)
    s.set_epoch(2, start_batch=3)
    assert list(s) == full[3:] and len(s) == 2


def test_batch_larger_than_dataset_is_a_clear_error():
    with pytest.raises(ValueError, match=r"larger than the dataset \(10 items\)"):
        EpochBatchSampler(10, 16)


def test_no_drop_last_covers_everything():
    parts = [_batches(dataset_size=11, batch_size=2, rank=r, world_size=2, drop_last=False,
                      shuffle=False) for r in (0, 1)]
    seen = sorted(i for p in parts for b in p for i, _ in b)
    assert seen == list(range(11))



class _Images(torch.utils.data.Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, i):
        return torch.full((1, 4, 4), i, dtype=torch.uint8), i


def test_seeded_keys_give_reproducible_distinct_views():
    noisy = lambda img: img.float() + torch.rand(img.shape)  # noqa: E731  (per-image path)
    ds = TransformedDataset(_Images(), MultiView(noisy, n_views=2))
    a, label = ds[(1, 123)]
    b, _ = ds[(1, 123)]
    c, _ = ds[(1, 124)]
    assert a.shape == (2, 1, 4, 4) and label == 1
    assert torch.equal(a, b) and not torch.equal(a, c) and not torch.equal(a[0], a[1])
    # an item's views do not depend on the batch it is loaded in
    batch = ds.__getitems__([(0, 7), (1, 123)])
    assert torch.equal(batch[1][0], a)
    before = torch.get_rng_state()
    ds[(2, 5)]
    assert torch.equal(before, torch.get_rng_state())  # the caller's RNG is untouched
