"""clustering_scores: k-means and Ward agglomerative NMI/ARI."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from varcon.evaluation import clustering_scores

KEYS = {"kmeans_nmi", "kmeans_ari", "agglomerative_nmi", "agglomerative_ari"}


def _blobs(num_classes: int, per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Blobs around orthogonal directions (separated after L2 normalisation)."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(num_classes), per_class)
    feats = 10.0 * np.eye(num_classes + 2)[labels] + rng.normal(
        0, 0.3, (len(labels), num_classes + 2)
    )
    perm = rng.permutation(len(labels))
    return feats[perm], labels[perm]


def test_well_separated_blobs_score_one() -> None:
    feats, labels = _blobs(4, 40, 0)
    scores = clustering_scores(torch.from_numpy(feats).float(), torch.from_numpy(labels),
                               num_classes=4)
    assert set(scores) == KEYS
    assert all(isinstance(v, float) for v in scores.values())
    for v in scores.values():
        assert v == pytest.approx(1.0, abs=1e-9)


def test_random_labels_score_near_zero() -> None:
    feats, _ = _blobs(4, 60, 1)
    labels = np.random.default_rng(2).integers(0, 4, len(feats))
    scores = clustering_scores(feats, labels, num_classes=4)
    assert scores["kmeans_nmi"] < 0.05 and scores["agglomerative_nmi"] < 0.05
    assert abs(scores["kmeans_ari"]) < 0.05 and abs(scores["agglomerative_ari"]) < 0.05
    assert 0.0 <= scores["kmeans_nmi"] <= 1.0


def test_uses_normalised_features() -> None:
    """Two classes on two rays with very different radii: normalisation separates them."""
    rng = np.random.default_rng(0)
    radii = rng.uniform(0.1, 100.0, 60)[:, None]
    labels = np.repeat([0, 1], 30)
    directions = np.where(labels[:, None] == 0, [[1.0, 0.0]], [[0.0, 1.0]])
    feats = radii * directions
    scores = clustering_scores(feats, labels, num_classes=2)
    assert scores["kmeans_nmi"] == pytest.approx(1.0)
    assert scores["agglomerative_ari"] == pytest.approx(1.0)


def test_seed_determinism_and_max_samples() -> None:
    feats, labels = _blobs(3, 100, 3)
    a = clustering_scores(feats, labels, num_classes=3, seed=5, max_samples=60)
    b = clustering_scores(feats, labels, num_classes=3, seed=5, max_samples=60)
    assert a == b
    assert a["kmeans_nmi"] == pytest.approx(1.0)
    with pytest.raises(ValueError):
        clustering_scores(feats, labels, num_classes=3, max_samples=0)


def test_max_samples_subsets() -> None:
    # the subset really is used: 5 clusters are impossible on a 4-row subset of 40 rows
    feats, labels = _blobs(2, 20, 4)
    with pytest.raises(ValueError, match="num_classes"):
        clustering_scores(feats, labels, num_classes=5, max_samples=4)
    assert set(clustering_scores(feats, labels, num_classes=2, max_samples=4)) == KEYS


def test_invalid_shapes() -> None:
    with pytest.raises(ValueError):
        clustering_scores(np.zeros((5, 2)), np.zeros(4), num_classes=2)
    with pytest.raises(ValueError):
        clustering_scores(np.zeros(5), np.zeros(5), num_classes=2)
