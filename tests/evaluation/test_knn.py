"""Weighted kNN: hand-computed and brute-force NumPy references, chunking, clamping."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from varcon.evaluation import knn_accuracy, knn_classify, knn_evaluate


def brute_force_scores(train: np.ndarray, train_y: np.ndarray, test: np.ndarray,
                       num_classes: int, k: int, temperature: float) -> np.ndarray:
    """Per test row: cosine to every train row, k largest, sum exp(s / T) per class."""
    train = train / np.linalg.norm(train, axis=1, keepdims=True)
    test = test / np.linalg.norm(test, axis=1, keepdims=True)
    k = min(k, len(train))
    out = np.zeros((len(test), num_classes))
    for i, q in enumerate(test):
        sims = np.array([float(np.dot(q, t)) for t in train])
        for j in np.argsort(-sims, kind="stable")[:k]:
            out[i, train_y[j]] += math.exp(sims[j] / temperature)
    return out


def _random_problem(seed: int, n_train: int = 50, n_test: int = 13, dim: int = 6,
                    num_classes: int = 4) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(n_train, dim, generator=g, dtype=torch.float64),
        torch.randint(num_classes, (n_train,), generator=g),
        torch.randn(n_test, dim, generator=g, dtype=torch.float64),
        torch.randint(num_classes, (n_test,), generator=g),
    )


def test_hand_computed_example() -> None:
    s = 1 / math.sqrt(2)
    train = torch.tensor([[1.0, 0.0], [0.0, 1.0], [s, s], [-1.0, 0.0]])
    labels = torch.tensor([0, 1, 1, 2])
    test = torch.tensor([[2.0, 0.0], [0.0, -3.0]])  # unnormalised on purpose
    scores = knn_classify(train, labels, test, num_classes=3, k=2, temperature=0.1)
    # row 0: cosines 1, 0, 0.7071, -1 -> neighbours 0 (class 0) and 2 (class 1)
    # row 1: cosines 0, -1, -0.7071, 0 -> neighbours 0 (class 0) and 3 (class 2)
    expected = torch.tensor(
        [[math.exp(10.0), math.exp(10 * s), 0.0], [1.0, 0.0, 1.0]], dtype=torch.float64
    )
    torch.testing.assert_close(scores, expected, rtol=1e-5, atol=1e-6)
    assert scores.shape == (2, 3)


@pytest.mark.parametrize(("k", "temperature"), [(1, 0.1), (5, 0.07), (20, 0.5), (50, 1.0)])
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_brute_force(k: int, temperature: float, seed: int) -> None:
    train, train_y, test, _ = _random_problem(seed)
    scores = knn_classify(train, train_y, test, num_classes=4, k=k, temperature=temperature)
    ref = brute_force_scores(train.numpy(), train_y.numpy(), test.numpy(), 4, k, temperature)
    np.testing.assert_allclose(scores.numpy(), ref, rtol=1e-10)


def test_float32_inputs_match_reference() -> None:
    train, train_y, test, _ = _random_problem(3)
    scores = knn_classify(train.float(), train_y, test.float(), num_classes=4, k=7,
                          temperature=0.1)
    ref = brute_force_scores(train.numpy(), train_y.numpy(), test.numpy(), 4, 7, 0.1)
    np.testing.assert_allclose(scores.numpy(), ref, rtol=1e-5)


@pytest.mark.parametrize("chunk_size", [1, 3, 12, 13, 1000])
def test_chunked_equals_unchunked(chunk_size: int) -> None:
    train, train_y, test, _ = _random_problem(4)
    full = knn_classify(train, train_y, test, num_classes=4, k=9, chunk_size=10_000)
    chunked = knn_classify(train, train_y, test, num_classes=4, k=9, chunk_size=chunk_size)
    # same neighbours and weights; only BLAS rounding may differ between chunk shapes
    torch.testing.assert_close(chunked, full, rtol=1e-12, atol=0)


def test_k_is_clamped_to_train_size() -> None:
    train, train_y, test, _ = _random_problem(5, n_train=8)
    big = knn_classify(train, train_y, test, num_classes=4, k=200)
    exact = knn_classify(train, train_y, test, num_classes=4, k=8)
    torch.testing.assert_close(big, exact)
    # with every neighbour used, scores sum to the total weight over all train rows
    t = torch.nn.functional.normalize(test, dim=1) @ torch.nn.functional.normalize(train, dim=1).T
    torch.testing.assert_close(big.sum(1), (t / 0.1).exp().sum(1))


def test_small_temperature_does_not_overflow() -> None:
    train, train_y, test, _ = _random_problem(6)
    scores = knn_classify(train.float(), train_y, test.float(), num_classes=4, k=5,
                          temperature=0.005)
    assert torch.isfinite(scores).all()


def _separated(num_classes: int, per_class: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(num_classes).repeat_interleave(per_class)
    feats = torch.eye(num_classes)[labels] * 5 + 0.05 * torch.randn(len(labels), num_classes,
                                                                       generator=g)
    return feats, labels


@pytest.mark.parametrize("num_classes", [3, 10])
def test_perfect_separation_gives_100(num_classes: int) -> None:
    train, train_y = _separated(num_classes, 10, 0)
    test, test_y = _separated(num_classes, 4, 1)
    # k = 10 = neighbours of the right class only; k = 200 (clamped) still wins by weight
    for k in (10, 200):
        acc = knn_accuracy(train, train_y, test, test_y, num_classes=num_classes, k=k)
        assert acc == {"top1": 100.0, "top5": 100.0}


def test_accuracy_values_hand_example() -> None:
    train = torch.eye(7)
    train_y = torch.arange(7)
    # test row i gives class (i + j) % 7 rank j (distinct weights, no ties; k = all 7)
    w = torch.tensor([1.0, 0.8, 0.6, 0.4, 0.2, 0.1, 0.05])
    test = torch.stack([w.roll(i) for i in range(4)])
    # ranks of the true labels: 0 (top-1 hit), 4 (top-5 hit), 5 and 6 (misses)
    test_y = torch.tensor([0, 5, 0, 2])
    scores = knn_classify(train, train_y, test, num_classes=7, k=7)
    assert scores.argsort(dim=1, descending=True)[1].tolist() == [1, 2, 3, 4, 5, 6, 0]
    acc = knn_accuracy(train, train_y, test, test_y, num_classes=7, k=7, temperature=0.1)
    assert acc == {"top1": 25.0, "top5": 50.0}
    assert isinstance(acc["top1"], float) and isinstance(acc["top5"], float)


def test_top5_uses_min_5_num_classes() -> None:
    train = torch.eye(3)
    test = torch.tensor([[1.0, 0.1, 0.0], [0.0, 1.0, 0.2]])
    acc = knn_accuracy(train, torch.arange(3), test, torch.tensor([2, 0]), num_classes=3, k=1)
    assert acc == {"top1": 0.0, "top5": 100.0}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"train_labels": torch.tensor([0, 1, 4])},  # label >= num_classes
        {"train_labels": torch.tensor([0, -1, 1])},
        {"test": torch.zeros(2, 3)},  # dim mismatch
        {"temperature": 0.0},
        {"k": 0},
        {"chunk_size": 0},
        {"train_labels": torch.tensor([0, 1])},  # length mismatch
    ],
)
def test_invalid_inputs(kwargs: dict[str, object]) -> None:
    args: dict[str, object] = {
        "train": torch.randn(3, 2), "train_labels": torch.tensor([0, 1, 1]),
        "test": torch.randn(2, 2), "temperature": 0.1, "k": 2, "chunk_size": 4,
    }
    args.update(kwargs)
    with pytest.raises(ValueError):
        knn_classify(args["train"], args["train_labels"], args["test"], num_classes=2,
                     k=args["k"], temperature=args["temperature"],
                     chunk_size=args["chunk_size"])


def test_accuracy_label_count_mismatch() -> None:
    with pytest.raises(ValueError):
        knn_accuracy(torch.randn(3, 2), torch.tensor([0, 1, 1]), torch.randn(2, 2),
                     torch.tensor([0]), num_classes=2)


# --- knn_evaluate: several k in one pass ------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_evaluate_matches_knn_accuracy_per_k(seed: int) -> None:
    train, train_y, test, test_y = _random_problem(seed, n_train=80, n_test=37, num_classes=7)
    ks = (1, 3, 20, 79, 200)  # 200 > N_train = 80: clamped
    out = knn_evaluate(train, train_y, test, test_y, num_classes=7, ks=ks, temperature=0.07)
    assert set(out) == {"top1", "top5"}
    assert list(out["top1"]) == [str(k) for k in ks] and list(out["top5"]) == list(out["top1"])
    for k in ks:
        ref = knn_accuracy(train, train_y, test, test_y, num_classes=7, k=k, temperature=0.07)
        assert out["top1"][str(k)] == ref["top1"]
        assert out["top5"][str(k)] == ref["top5"]
        assert isinstance(out["top1"][str(k)], float)


def test_evaluate_k_changes_the_vote_hand_example() -> None:
    """k = 1 follows the single nearest row; k = 4 is outvoted by three slightly farther rows."""
    c = 0.9
    s = math.sqrt(1 - c * c)
    train = torch.tensor([[1.0, 0.0], [c, s], [c, -s], [c, s], [-1.0, 0.0]], dtype=torch.float64)
    train_y = torch.tensor([0, 1, 1, 1, 2])
    test = torch.tensor([[3.0, 0.0]], dtype=torch.float64)
    # k = 4: class 1 gets 3 exp(9) = 24309 > class 0's exp(10) = 22026
    out = knn_evaluate(train, train_y, test, torch.tensor([0]), num_classes=3, ks=(1, 4, 5),
                       temperature=0.1)
    assert out["top1"] == {"1": 100.0, "4": 0.0, "5": 0.0}
    assert out["top5"] == {"1": 100.0, "4": 100.0, "5": 100.0}


def test_evaluate_k_above_train_size_equals_all_rows() -> None:
    train, train_y, test, test_y = _random_problem(7, n_train=30, num_classes=4)
    out = knn_evaluate(train, train_y, test, test_y, num_classes=4, ks=(30, 1000))
    assert out["top1"]["30"] == out["top1"]["1000"] and out["top5"]["30"] == out["top5"]["1000"]


@pytest.mark.parametrize("chunk_size", [1, 5, 36, 37])
def test_evaluate_chunked_equals_unchunked(chunk_size: int) -> None:
    train, train_y, test, test_y = _random_problem(8, n_train=60, n_test=37, num_classes=5)
    full = knn_evaluate(train, train_y, test, test_y, num_classes=5, ks=(2, 10, 50),
                        chunk_size=10_000)
    chunked = knn_evaluate(train, train_y, test, test_y, num_classes=5, ks=(2, 10, 50),
                           chunk_size=chunk_size)
    assert chunked == full


def test_evaluate_never_builds_full_similarity(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every similarity matrix is at most [chunk_size, N_train]."""
    train, train_y, test, test_y = _random_problem(9, n_train=40, n_test=25, num_classes=4)
    shapes: list[tuple[int, ...]] = []
    real_topk = torch.Tensor.topk

    def spy(self: torch.Tensor, *args: object, **kwargs: object) -> object:
        if self.shape[-1] == 40:  # similarity rows (class-score rows have 4 columns)
            shapes.append(tuple(self.shape))
        return real_topk(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "topk", spy)
    knn_evaluate(train, train_y, test, test_y, num_classes=4, ks=(5, 20), chunk_size=8)
    assert shapes == [(8, 40), (8, 40), (8, 40), (1, 40)]  # one topk per chunk for all ks


@pytest.mark.parametrize("num_classes", [3, 10])
def test_evaluate_perfect_separation_gives_100(num_classes: int) -> None:
    train, train_y = _separated(num_classes, 10, 0)
    test, test_y = _separated(num_classes, 4, 1)
    out = knn_evaluate(train, train_y, test, test_y, num_classes=num_classes, ks=(10, 200))
    assert out == {"top1": {"10": 100.0, "200": 100.0}, "top5": {"10": 100.0, "200": 100.0}}


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"ks": ()}, "at least one k"),
        ({"ks": (5, 0)}, ">= 1"),
        ({"test_labels": torch.tensor([0])}, "test_labels"),
        ({"temperature": -1.0}, "temperature"),
    ],
)
def test_evaluate_invalid_inputs(kwargs: dict[str, object], match: str) -> None:
    args: dict[str, object] = {"test_labels": torch.tensor([0, 1]), "ks": (1, 2),
                               "temperature": 0.1}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        knn_evaluate(torch.randn(3, 2), torch.tensor([0, 1, 1]), torch.randn(2, 2),
                     args["test_labels"], num_classes=2, ks=args["ks"],
                     temperature=args["temperature"])
