"""Clustering scores, purity, class-balanced subsampling, class-centroid geometry."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from varcon.evaluation import (
    centroid_similarity,
    class_balanced_subsample,
    class_centroids,
    clustering_scores,
    offdiag_stats,
    purity_score,
)

ALGOS = ("kmeans", "agglomerative_ward", "agglomerative_average_cosine")
SCORES = {"ari", "nmi", "ami", "purity"}


def _blobs(num_classes: int, per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Blobs around orthogonal directions (separated after L2 normalisation)."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(num_classes), per_class)
    feats = 10.0 * np.eye(num_classes + 2)[labels] + rng.normal(
        0, 0.3, (len(labels), num_classes + 2)
    )
    perm = rng.permutation(len(labels))
    return feats[perm], labels[perm]


# --- clustering_scores -------------------------------------------------------------------------


def test_well_separated_blobs_score_one_for_every_algorithm() -> None:
    feats, labels = _blobs(4, 40, 0)
    out = clustering_scores(torch.from_numpy(feats).float(), torch.from_numpy(labels),
                            num_classes=4)
    assert out["n_samples"] == 160 and out["num_clusters"] == 4
    assert set(out["algorithms"]) == set(ALGOS)
    for name in ALGOS:
        scores = out["algorithms"][name]
        assert set(scores) == SCORES
        for v in scores.values():
            assert isinstance(v, float)
            assert v == pytest.approx(1.0, abs=1e-9)


def test_random_labels_score_near_zero() -> None:
    feats, _ = _blobs(4, 100, 1)
    labels = np.random.default_rng(2).integers(0, 4, len(feats))
    out = clustering_scores(feats, labels, num_classes=4)
    for name in ALGOS:
        s = out["algorithms"][name]
        # N = 400, 4 x 4 table: chance NMI ~ (K-1)^2 / (2 N ln 4) ~ 0.01; ARI, AMI ~ 0
        assert abs(s["ari"]) < 0.05 and abs(s["ami"]) < 0.05, (name, s)
        assert 0.0 <= s["nmi"] < 0.05, (name, s)
        # purity can't drop below the largest class share and stays near it by chance
        share = np.bincount(labels).max() / len(labels)
        assert share - 1e-12 <= s["purity"] < share + 0.1, (name, s)


def test_uses_normalised_features() -> None:
    """Two classes on two rays with very different radii: normalisation separates them."""
    rng = np.random.default_rng(0)
    radii = rng.uniform(0.1, 100.0, 60)[:, None]
    labels = np.repeat([0, 1], 30)
    directions = np.where(labels[:, None] == 0, [[1.0, 0.0]], [[0.0, 1.0]])
    out = clustering_scores(radii * directions, labels, num_classes=2)
    for name in ALGOS:
        assert out["algorithms"][name]["ari"] == pytest.approx(1.0)


def test_algorithms_subset_and_unknown_name() -> None:
    feats, labels = _blobs(3, 10, 0)
    out = clustering_scores(feats, labels, num_classes=3, algorithms=("agglomerative_ward",))
    assert list(out["algorithms"]) == ["agglomerative_ward"]
    with pytest.raises(ValueError, match="agglomerative_average_cosine") as err:
        clustering_scores(feats, labels, num_classes=3, algorithms=("kmeans", "dbscan"))
    assert "dbscan" in str(err.value)
    with pytest.raises(ValueError, match="choose from"):
        clustering_scores(feats, labels, num_classes=3, algorithms=())


def test_seed_determinism_and_max_samples() -> None:
    feats, labels = _blobs(3, 100, 3)
    a = clustering_scores(feats, labels, num_classes=3, seed=5, max_samples=60)
    b = clustering_scores(feats, labels, num_classes=3, seed=5, max_samples=60)
    assert a == b
    assert a["n_samples"] == 60
    assert a["algorithms"]["kmeans"]["nmi"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="max_samples"):
        clustering_scores(feats, labels, num_classes=3, max_samples=0)
    assert clustering_scores(feats, labels, num_classes=3, max_samples=1000)["n_samples"] == 300


def test_max_samples_subsets() -> None:
    # the subset really is used: 5 clusters are impossible on a 4-row subset of 40 rows
    feats, labels = _blobs(2, 20, 4)
    with pytest.raises(ValueError, match="num_classes"):
        clustering_scores(feats, labels, num_classes=5, max_samples=4)
    out = clustering_scores(feats, labels, num_classes=2, max_samples=4)
    assert out["n_samples"] == 4
    # class-balanced: 2 + 2 rows of two clean blobs cluster perfectly
    assert out["algorithms"]["kmeans"]["ari"] == pytest.approx(1.0)


def test_invalid_shapes() -> None:
    with pytest.raises(ValueError):
        clustering_scores(np.zeros((5, 2)), np.zeros(4), num_classes=2)
    with pytest.raises(ValueError):
        clustering_scores(np.zeros(5), np.zeros(5), num_classes=2)


# --- purity_score ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("true", "pred", "expected"),
    [
        ([0, 0, 1, 1], [5, 5, 7, 7], 1.0),  # perfect up to renaming
        ([0, 0, 1, 1], [0, 0, 0, 0], 0.5),  # one cluster: majority share
        ([0, 0, 0, 1, 1, 2], [0, 0, 1, 1, 1, 1], 4 / 6),  # cluster 0: 2 of class 0; 1: 2 of 1
        ([0, 1, 2, 3], [0, 1, 2, 3], 1.0),
        ([0, 0, 1, 1, 1], [0, 1, 2, 3, 4], 1.0),  # singletons are pure
        ([0, 1, 0, 1, 2, 2, 2], [0, 0, 0, 0, 1, 1, 0], 4 / 7),  # cluster 0 {0,1,0,1,2}: 2; 1: 2
    ],
)
def test_purity_hand_examples(true: list[int], pred: list[int], expected: float) -> None:
    got = purity_score(np.array(true), torch.tensor(pred))
    assert isinstance(got, float)
    assert got == pytest.approx(expected)


def test_purity_length_mismatch() -> None:
    with pytest.raises(ValueError):
        purity_score([0, 1], [0])


# --- class_balanced_subsample ------------------------------------------------------------------


def test_subsample_returns_all_when_small() -> None:
    labels = np.array([3, 1, 1, 2])
    np.testing.assert_array_equal(class_balanced_subsample(labels, 4), np.arange(4))
    np.testing.assert_array_equal(class_balanced_subsample(labels, 100), np.arange(4))


def test_subsample_is_class_balanced() -> None:
    rng = np.random.default_rng(0)
    labels = rng.permutation(np.repeat([0, 1, 2, 3], [500, 40, 300, 7]))
    idx = class_balanced_subsample(torch.from_numpy(labels), 200, seed=1)
    assert idx.dtype == np.int64 and len(idx) == 200
    assert np.all(np.diff(idx) > 0)  # sorted, no duplicates
    counts = np.bincount(labels[idx], minlength=4)
    # class 3 gives all 7, class 1 all 40; the other two share 153: 77 + 76 in some order
    assert counts[3] == 7 and counts[1] == 40
    assert sorted(counts[[0, 2]].tolist()) == [76, 77]


def test_subsample_equal_shares_and_remainder() -> None:
    labels = np.repeat(np.arange(10), 50)
    idx = class_balanced_subsample(labels, 123, seed=0)
    counts = np.bincount(labels[idx], minlength=10)
    assert counts.sum() == 123 and set(counts.tolist()) == {12, 13}
    assert (counts == 13).sum() == 3
    # fewer rows than classes: one row each from max_samples distinct classes
    counts = np.bincount(labels[class_balanced_subsample(labels, 4, seed=0)], minlength=10)
    assert sorted(counts.tolist()) == [0] * 6 + [1] * 4


def test_subsample_is_seeded() -> None:
    labels = np.repeat(np.arange(5), 100)
    a = class_balanced_subsample(labels, 50, seed=3)
    np.testing.assert_array_equal(a, class_balanced_subsample(labels, 50, seed=3))
    assert not np.array_equal(a, class_balanced_subsample(labels, 50, seed=4))
    with pytest.raises(ValueError, match="max_samples"):
        class_balanced_subsample(labels, 0)


# --- class centroids ---------------------------------------------------------------------------


def test_centroids_and_similarity_hand_example() -> None:
    feats = torch.tensor([[2.0, 0.0], [0.0, 5.0],   # class 0: unit vectors (1,0), (0,1)
                          [-3.0, 0.0],               # class 1: (-1, 0)
                          [0.0, -1.0], [0.0, -4.0]])  # class 2: (0, -1) twice
    labels = torch.tensor([0, 0, 1, 2, 2])
    cents = class_centroids(feats, labels, 3)
    s = 1 / math.sqrt(2)
    expected = torch.tensor([[s, s], [-1.0, 0.0], [0.0, -1.0]])
    torch.testing.assert_close(cents, expected)
    assert cents.dtype == torch.float32
    sim = centroid_similarity(cents)
    expected_sim = torch.tensor([[1.0, -s, -s], [-s, 1.0, 0.0], [-s, 0.0, 1.0]])
    torch.testing.assert_close(sim, expected_sim)
    stats = offdiag_stats(sim)
    assert stats["centroid_similarity_offdiag_mean"] == pytest.approx(-2 * s / 3, abs=1e-6)
    assert stats["centroid_similarity_offdiag_max"] == pytest.approx(0.0, abs=1e-6)


def test_centroids_use_normalised_features() -> None:
    """A long vector must not dominate its class mean."""
    feats = torch.tensor([[100.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    cents = class_centroids(feats, torch.tensor([0, 0]), 1)
    s = 1 / math.sqrt(2)
    torch.testing.assert_close(cents, torch.tensor([[s, s]], dtype=torch.float64))


def test_similarity_symmetric_unit_diagonal() -> None:
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(300, 16, generator=g)
    labels = torch.randint(7, (300,), generator=g)
    sim = centroid_similarity(class_centroids(feats, labels, 7))
    assert sim.shape == (7, 7)
    assert torch.equal(sim, sim.T)
    torch.testing.assert_close(sim.diagonal(), torch.ones(7))
    assert sim.abs().max() <= 1.0
    off = sim[~torch.eye(7, dtype=torch.bool)]
    stats = offdiag_stats(sim.numpy())
    assert stats["centroid_similarity_offdiag_mean"] == pytest.approx(float(off.double().mean()))
    assert stats["centroid_similarity_offdiag_max"] == pytest.approx(float(off.max()))


def test_centroid_errors() -> None:
    with pytest.raises(ValueError, match=r"\[1, 3\]"):
        class_centroids(torch.randn(3, 2), torch.tensor([0, 2, 0]), 4)
    with pytest.raises(ValueError, match="lie in"):
        class_centroids(torch.randn(3, 2), torch.tensor([0, 2, 5]), 4)
    with pytest.raises(ValueError):
        class_centroids(torch.randn(3, 2), torch.tensor([0, 1]), 2)
    with pytest.raises(ValueError, match="at least 2"):
        offdiag_stats(torch.ones(1, 1))
    with pytest.raises(ValueError, match="square"):
        offdiag_stats(torch.ones(2, 3))
