"""Clustering quality of features (k-means and Ward agglomerative vs. true labels)."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.cluster import AgglomerativeClustering, KMeans
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

__all__ = ["clustering_scores"]


def clustering_scores(
    feats: torch.Tensor | np.ndarray,
    labels: torch.Tensor | np.ndarray,
    *,
    num_classes: int,
    seed: int = 0,
    max_samples: int | None = None,
) -> dict[str, float]:
    """NMI / ARI of k-means and Ward agglomerative clusterings of L2-normalised features.

    ``feats [N, D]``, ``labels [N]``. Both algorithms use ``num_classes`` clusters; k-means uses
    ``n_init=10, random_state=seed``. ``max_samples`` (optional) clusters a seeded random
    subset of that many rows (Ward is O(N^2) in memory).

    Returns ``{"kmeans_nmi", "kmeans_ari", "agglomerative_nmi", "agglomerative_ari"}``
    (NMI in [0, 1], ARI in [-1, 1]) as Python floats.
    """
    x = feats.detach().cpu().double().numpy() if isinstance(feats, torch.Tensor) else feats
    y = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else labels
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y).reshape(-1)
    if x.ndim != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(f"feats must be [N, D] matching labels [N]: {x.shape} vs {y.shape}")
    if max_samples is not None:
        if max_samples < 1:
            raise ValueError(f"max_samples must be >= 1, got {max_samples}")
        if x.shape[0] > max_samples:
            keep = np.sort(
                np.random.default_rng(seed).choice(x.shape[0], max_samples, replace=False)
            )
            x, y = x[keep], y[keep]
    if not 1 <= num_classes <= x.shape[0]:
        raise ValueError(f"num_classes must be in [1, N={x.shape[0]}], got {num_classes}")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    x = x / np.maximum(norms, 1e-12)
    km = KMeans(n_clusters=num_classes, n_init=10, random_state=seed).fit_predict(x)
    ag = AgglomerativeClustering(n_clusters=num_classes, linkage="ward").fit_predict(x)
    return {
        "kmeans_nmi": float(normalized_mutual_info_score(y, km)),
        "kmeans_ari": float(adjusted_rand_score(y, km)),
        "agglomerative_nmi": float(normalized_mutual_info_score(y, ag)),
        "agglomerative_ari": float(adjusted_rand_score(y, ag)),
    }
