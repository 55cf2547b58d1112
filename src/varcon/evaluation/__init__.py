"""Evaluation: feature extraction, weighted kNN, clustering scores."""

from .clustering import (
    CLUSTERING_ALGORITHMS,
    centroid_similarity,
    class_balanced_subsample,
    class_centroids,
    clustering_scores,
    offdiag_stats,
    purity_score,
)
from .features import extract_features, owning_module
from .knn import knn_accuracy, knn_classify, knn_evaluate

__all__ = [
    "CLUSTERING_ALGORITHMS",
    "centroid_similarity",
    "class_balanced_subsample",
    "class_centroids",
    "clustering_scores",
    "extract_features",
    "knn_accuracy",
    "knn_classify",
    "knn_evaluate",
    "offdiag_stats",
    "owning_module",
    "purity_score",
]
