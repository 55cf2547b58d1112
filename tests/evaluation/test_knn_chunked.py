"""kNN against a training set read in chunks (a running top-k) equals one top-k over all rows."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from varcon.evaluation import knn as knn_mod
from varcon.evaluation.knn import knn_accuracy, knn_classify, knn_evaluate


def _reference_scores(train, labels, test, num_classes, k, temperature, chunk_size=1024):
    """knn_classify as it was before training rows were chunked: one [c, N_train] matmul."""
    work = torch.promote_types(train.dtype, torch.float32)
    t = F.normalize(train.to(work), dim=1)
    k = min(k, t.shape[0])
    scores = torch.zeros(test.shape[0], num_classes, dtype=torch.float64)
    for s in range(0, test.shape[0], chunk_size):
        sim = F.normalize(test[s:s + chunk_size].to(work), dim=1) @ t.T
        top_sim, top_idx = sim.topk(k, dim=1)
        scores[s:s + chunk_size].scatter_add_(1, labels[top_idx],
                                              (top_sim.double() / temperature).exp())
    return scores


def _data(n_train, n_test, d, c, seed, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    train = torch.randn(n_train, d, generator=g).to(dtype)
    test = torch.randn(n_test, d, generator=g).to(dtype)
    labels = torch.randint(0, c, (n_train,), generator=g)
    test_labels = torch.randint(0, c, (n_test,), generator=g)
    return train, labels, test, test_labels


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("train_chunk", [16, 64, 100, 299, 300, 10_000])
def test_chunked_scores_equal_one_topk(dtype, train_chunk):
    train, labels, test, _ = _data(300, 45, 16, 5, 0, dtype)
    ref = _reference_scores(train, labels, test, 5, 20, 0.1, chunk_size=16)
    got = knn_classify(train, labels, test, num_classes=5, k=20, temperature=0.1,
                       chunk_size=16, train_chunk_size=train_chunk)
    assert got.dtype == torch.float64
    assert torch.equal(got, ref)


@pytest.mark.parametrize("train_chunk", [16, 50, 256, 257, knn_mod.TRAIN_CHUNK])
def test_chunked_evaluate_equals_unchunked(train_chunk):
    train, labels, test, test_labels = _data(257, 64, 8, 10, 1)
    ks = (1, 5, 20, 300)  # 300 > N_train: every row
    whole = knn_evaluate(train, labels, test, test_labels, num_classes=10, ks=ks,
                         chunk_size=10, train_chunk_size=10_000)
    got = knn_evaluate(train, labels, test, test_labels, num_classes=10, ks=ks,
                       chunk_size=10, train_chunk_size=train_chunk)
    assert got == whole
    # and the accuracy of the reference scores
    for k in ks:
        scores = _reference_scores(train, labels, test, 10, k, 0.1)
        top = scores.topk(5, dim=1).indices.eq(test_labels[:, None])
        assert whole["top1"][str(k)] == 100.0 * float(top[:, 0].sum()) / 64
        assert whole["top5"][str(k)] == 100.0 * float(top.any(1).sum()) / 64
    acc = knn_accuracy(train, labels, test, test_labels, num_classes=10, k=20,
                       chunk_size=10, train_chunk_size=train_chunk)
    assert acc == {"top1": whole["top1"]["20"], "top5": whole["top5"]["20"]}


def test_ties_across_chunks_give_the_same_scores():
    """Every training row twice (same label): neighbours tie in pairs, often split over two
    chunks. topk does not define the order of equal similarities, but tied rows with one label
    give the same votes in any order, so the scores are equal to the last bit."""
    train, labels, test, _ = _data(40, 30, 6, 4, 2)
    train2 = torch.cat([train, train])
    labels2 = torch.cat([labels, labels])
    ref = _reference_scores(train2, labels2, test, 4, 9, 0.07)
    for chunk in (16, 40, 41, 79, 80):
        got = knn_classify(train2, labels2, test, num_classes=4, k=9, temperature=0.07,
                           train_chunk_size=chunk)
        assert torch.equal(got, ref), chunk


def test_train_chunk_bounds_the_similarity_block(monkeypatch):
    """With N_train > train_chunk_size no matmul has more than train_chunk_size columns and no
    float32 copy of the whole training set is made."""
    train, labels, test, test_labels = _data(1000, 32, 8, 3, 3, torch.float16)
    widths: list[int] = []
    real_normalize = F.normalize

    def spy(x, *a, **kw):
        widths.append(x.shape[0])
        return real_normalize(x, *a, **kw)

    monkeypatch.setattr(knn_mod.F, "normalize", spy)
    knn_evaluate(train, labels, test, test_labels, num_classes=3, ks=(10,), chunk_size=8,
                 train_chunk_size=128)
    assert max(widths) <= 128 and 1000 not in widths


def test_train_chunk_size_must_be_positive():
    train, labels, test, test_labels = _data(10, 4, 3, 2, 4)
    with pytest.raises(ValueError, match="train_chunk_size"):
        knn_evaluate(train, labels, test, test_labels, num_classes=2, train_chunk_size=0)
