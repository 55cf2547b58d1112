"""Clustering quality and class-centroid geometry of features.

``clustering_scores`` clusters L2-normalised features into ``num_classes`` groups with k-means and
two agglomerative (hierarchical) clusterings and compares the partitions to the labels (ARI, NMI,
AMI, purity). ``class_centroids`` / ``centroid_similarity`` / ``offdiag_stats`` describe how far
apart the class means are on the sphere.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.cluster import AgglomerativeClustering, KMeans
from sklearn.metrics import (
    adjusted_mutual_info_score,
    adjusted_rand_score,
    normalized_mutual_info_score,
)
from sklearn.metrics.cluster import contingency_matrix

from varcon._text import shorten

__all__ = [
    "CLUSTERING_ALGORITHMS",
    "centroid_similarity",
    "class_balanced_subsample",
    "class_centroids",
    "clustering_scores",
    "offdiag_stats",
    "purity_score",
]

#: names accepted by ``clustering_scores(algorithms=...)``
CLUSTERING_ALGORITHMS = ("kmeans", "agglomerative_ward", "agglomerative_average_cosine")


def _as_numpy(x: torch.Tensor | np.ndarray) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def class_balanced_subsample(
    labels: torch.Tensor | np.ndarray, max_samples: int, seed: int = 0
) -> np.ndarray:
    """Sorted indices of a class-balanced random subset of at most ``max_samples`` rows.

    With ``N = len(labels) <= max_samples`` every index is returned. Otherwise the quota of each
    class is filled like water: every class gets ``share = remaining // active`` rows; a class
    with fewer rows than its share gives all of them and leaves the game, and the share is
    recomputed over the rest until every remaining class can pay it. The
    ``remaining - share * active`` (< ``active``) rows left over go, one each, to classes drawn
    at random among those with rows to spare. Within a class the rows are drawn uniformly
    without replacement. Everything is drawn from ``np.random.default_rng(seed)``.

    ``labels [N]`` (any hashable integer values) -> ``int64 [min(N, max_samples)]``, ascending.
    """
    if max_samples < 1:
        raise ValueError(f"max_samples must be >= 1, got {max_samples}")
    y = _as_numpy(labels).reshape(-1)
    n = y.shape[0]
    if n <= max_samples:
        return np.arange(n, dtype=np.int64)
    rng = np.random.default_rng(seed)
    classes, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    quota = np.zeros(len(classes), dtype=np.int64)
    active = np.arange(len(classes))
    remaining = int(max_samples)
    while True:
        share = remaining // len(active)
        small = counts[active] <= share
        if not small.any():
            break
        # classes too small for an equal share give every row they have
        quota[active[small]] = counts[active[small]]
        remaining -= int(counts[active[small]].sum())
        active = active[~small]
    quota[active] = share
    extra = remaining - share * len(active)
    if extra:
        # every active class has > share rows, so each can take one more
        quota[rng.choice(active, size=extra, replace=False)] += 1
    order = np.argsort(inverse, kind="stable")  # row indices grouped by class
    starts = np.concatenate([[0], np.cumsum(counts)])
    keep = [
        rng.choice(order[starts[c] : starts[c + 1]], size=int(quota[c]), replace=False)
        for c in range(len(classes))
        if quota[c]
    ]
    return np.sort(np.concatenate(keep)).astype(np.int64)


def purity_score(
    labels_true: torch.Tensor | np.ndarray, labels_pred: torch.Tensor | np.ndarray
) -> float:
    """Cluster purity: ``(1/N) sum_k max_c |cluster_k ∩ class_c|``.

    The fraction of samples that belong to the majority true class of their cluster, in
    ``(0, 1]``; 1 for a partition that refines the classes (so, unlike ARI/NMI, it rewards
    over-segmentation: compare at a fixed number of clusters).
    """
    t = _as_numpy(labels_true).reshape(-1)
    p = _as_numpy(labels_pred).reshape(-1)
    if t.shape != p.shape or t.size == 0:
        raise ValueError(
            f"labels_true and labels_pred must be non-empty and equally long: "
            f"{t.shape} vs {p.shape}"
        )
    table = contingency_matrix(t, p)  # [classes, clusters]
    return float(table.max(axis=0).sum() / t.size)


def _cluster(name: str, x: np.ndarray, num_clusters: int, seed: int) -> np.ndarray:
    if name == "kmeans":
        return KMeans(n_clusters=num_clusters, n_init=10, random_state=seed).fit_predict(x)
    if name == "agglomerative_ward":
        # Ward merges the pair that least increases the within-cluster squared Euclidean
        # distance; on unit vectors that distance is 2 - 2 cos, so it is a cosine criterion too.
        return AgglomerativeClustering(n_clusters=num_clusters, linkage="ward").fit_predict(x)
    if name == "agglomerative_average_cosine":
        return AgglomerativeClustering(
            n_clusters=num_clusters, linkage="average", metric="cosine"
        ).fit_predict(x)
    raise AssertionError(name)  # names are validated by the caller


def clustering_scores(
    feats: torch.Tensor | np.ndarray,
    labels: torch.Tensor | np.ndarray,
    *,
    num_classes: int,
    seed: int = 0,
    max_samples: int | None = None,
    algorithms: Sequence[str] = CLUSTERING_ALGORITHMS,
) -> dict[str, object]:
    """ARI / NMI / AMI / purity of clusterings of L2-normalised features against the labels.

    ``feats [N, D]``, ``labels [N]``. Rows are L2-normalised (float64), then partitioned into
    ``num_classes`` clusters by each of ``algorithms``:

    - ``"kmeans"``: ``KMeans(num_classes, n_init=10, random_state=seed)``;
    - ``"agglomerative_ward"``: Ward linkage on the normalised features;
    - ``"agglomerative_average_cosine"``: average linkage with cosine distance.

    Agglomerative clustering needs ``O(N^2)`` memory, so with ``max_samples`` and
    ``N > max_samples`` the scores use ``class_balanced_subsample(labels, max_samples, seed)``.

    Returns ``{"n_samples": int (rows used), "num_clusters": num_classes,
    "algorithms": {name: {"ari", "nmi", "ami", "purity"}}}`` (Python floats; ARI and AMI in
    ``[-1, 1]`` with 0 for chance, NMI and purity in ``[0, 1]``; NMI/AMI use the arithmetic
    mean of the entropies, scikit-learn's default).
    """
    algorithms = list(algorithms)
    unknown = [a for a in algorithms if a not in CLUSTERING_ALGORITHMS]
    if unknown or not algorithms:
        raise ValueError(
            f"unknown clustering algorithm(s) {unknown or '(none given)'}; "
            f"choose from {list(CLUSTERING_ALGORITHMS)}"
        )
    x = np.asarray(_as_numpy(feats), dtype=np.float64)
    y = _as_numpy(labels).reshape(-1)
    if x.ndim != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(f"feats must be [N, D] matching labels [N]: {x.shape} vs {y.shape}")
    if max_samples is not None:
        keep = class_balanced_subsample(y, max_samples, seed)
        x, y = x[keep], y[keep]
    if not 1 <= num_classes <= x.shape[0]:
        raise ValueError(
            f"num_classes must be in [1, N={x.shape[0]}] (N = rows clustered, after "
            f"max_samples), got {num_classes}"
        )
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    results: dict[str, dict[str, float]] = {}
    for name in algorithms:
        pred = _cluster(name, x, num_classes, seed)
        results[name] = {
            "ari": float(adjusted_rand_score(y, pred)),
            "nmi": float(normalized_mutual_info_score(y, pred)),
            "ami": float(adjusted_mutual_info_score(y, pred)),
            "purity": purity_score(y, pred),
        }
    return {"n_samples": int(x.shape[0]), "num_clusters": int(num_classes),
            "algorithms": results}


def class_centroids(
    feats: torch.Tensor | np.ndarray, labels: torch.Tensor | np.ndarray, num_classes: int
) -> torch.Tensor:
    """L2-normalised class means of L2-normalised features.

    ``mu_c = normalize(mean_{i: y_i = c} normalize(f_i))``. ``feats [N, D]``, ``labels [N]``
    (ints in ``[0, num_classes)``) -> ``[num_classes, D]`` in ``feats``' floating dtype (at
    least float32); the sums run in float64. Raises ``ValueError`` naming any class with no
    sample (its centroid is undefined).
    """
    f = torch.as_tensor(feats)
    y = torch.as_tensor(labels).reshape(-1).to(device=f.device, dtype=torch.long)
    if f.ndim != 2 or f.shape[0] != y.shape[0]:
        raise ValueError(
            f"feats must be [N, D] matching labels [N]: {tuple(f.shape)} vs {tuple(y.shape)}"
        )
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes})")
    counts = torch.bincount(y, minlength=num_classes)
    empty = (counts == 0).nonzero().flatten().tolist()
    if empty:
        raise ValueError(
            f"class(es) [{shorten(empty)}] have no samples, so their centroid is undefined; "
            f"pass features that cover all {num_classes} classes"
        )
    out_dtype = torch.promote_types(f.dtype, torch.float32)
    unit = F.normalize(f.to(torch.float64), dim=1)
    sums = torch.zeros(num_classes, f.shape[1], dtype=torch.float64, device=f.device)
    sums.index_add_(0, y, unit)
    # normalising the sum equals normalising the mean (the count is a positive scale)
    return F.normalize(sums, dim=1).to(out_dtype)


def centroid_similarity(centroids: torch.Tensor) -> torch.Tensor:
    """Cosine similarity between rows: ``S_ij = <c_i, c_j> / (|c_i| |c_j|)``.

    ``centroids [C, D]`` -> ``[C, C]`` in the input's floating dtype (computed in float64),
    exactly symmetric and clamped to ``[-1, 1]`` against rounding.
    """
    c = torch.as_tensor(centroids)
    if c.ndim != 2:
        raise ValueError(f"centroids must be [C, D], got {tuple(c.shape)}")
    unit = F.normalize(c.to(torch.float64), dim=1)
    sim = unit @ unit.T
    sim = 0.5 * (sim + sim.T)  # BLAS need not return a bit-exact symmetric product
    return sim.clamp(-1.0, 1.0).to(torch.promote_types(c.dtype, torch.float32))


def offdiag_stats(sim: torch.Tensor | np.ndarray) -> dict[str, float]:
    """Mean and max of the off-diagonal entries of a square similarity matrix ``[C, C]``.

    Returns ``{"centroid_similarity_offdiag_mean", "centroid_similarity_offdiag_max"}``
    (Python floats; the mean is over the ``C (C - 1)`` ordered pairs, equal to the mean over
    unordered pairs for a symmetric matrix). Needs ``C >= 2``.
    """
    s = torch.as_tensor(sim)
    if s.ndim != 2 or s.shape[0] != s.shape[1]:
        raise ValueError(f"sim must be a square [C, C] matrix, got {tuple(s.shape)}")
    if s.shape[0] < 2:
        raise ValueError("off-diagonal statistics need at least 2 classes (C >= 2)")
    off = s.to(torch.float64)[~torch.eye(s.shape[0], dtype=torch.bool, device=s.device)]
    return {
        "centroid_similarity_offdiag_mean": float(off.mean()),
        "centroid_similarity_offdiag_max": float(off.max()),
    }
