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
from .corruptions import (
    CORRUPTIONS,
    EXTRA_CORRUPTIONS,
    SEVERITIES,
    CifarCDataset,
    CorruptedDataset,
    ImageNetCDataset,
    available_corruptions,
    corrupt,
    detect_corruption_layout,
)
from .features import extract_features, owning_module
from .fewshot import FEWSHOT_CLASSIFIERS, Episodes, fewshot_evaluate, sample_episodes
from .knn import knn_accuracy, knn_classify, knn_evaluate

__all__ = [
    "CLUSTERING_ALGORITHMS",
    "CORRUPTIONS",
    "EXTRA_CORRUPTIONS",
    "FEWSHOT_CLASSIFIERS",
    "SEVERITIES",
    "CifarCDataset",
    "CorruptedDataset",
    "Episodes",
    "ImageNetCDataset",
    "available_corruptions",
    "centroid_similarity",
    "class_balanced_subsample",
    "class_centroids",
    "clustering_scores",
    "corrupt",
    "detect_corruption_layout",
    "extract_features",
    "fewshot_evaluate",
    "knn_accuracy",
    "knn_classify",
    "knn_evaluate",
    "offdiag_stats",
    "owning_module",
    "purity_score",
    "sample_episodes",
]
