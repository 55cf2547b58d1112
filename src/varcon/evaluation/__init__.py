"""Evaluation: feature extraction, weighted kNN, clustering scores."""

from .clustering import clustering_scores
from .features import extract_features, owning_module
from .knn import knn_accuracy, knn_classify, knn_evaluate

__all__ = [
    "clustering_scores",
    "extract_features",
    "knn_accuracy",
    "knn_classify",
    "knn_evaluate",
    "owning_module",
]
