"""Evaluation: the protocols (a registry: :func:`register_protocol`, :func:`get_protocol`,
:func:`protocol_names`), running them on a checkpoint (:func:`evaluate_checkpoint`), feature
extraction, weighted kNN, clustering scores, few-shot episodes and image corruptions.

The registry is imported eagerly and is light; everything else is imported on first use
(``from varcon.evaluation import knn_evaluate`` works as before), so the CLI and ``varcon
report`` can list the protocols without loading scikit-learn and the evaluation code.
"""

from __future__ import annotations

import importlib
from typing import Any

from . import builtin_protocols as _builtin_protocols  # noqa: F401  (registers the built-ins)
from .registry import (
    CliOption,
    ProtocolSpec,
    ReportColumn,
    all_protocols,
    get_protocol,
    protocol_names,
    register_protocol,
    unregister_protocol,
)

# public name -> the submodule that defines it, imported when the name is first used
_LAZY = {
    **dict.fromkeys(("CLUSTERING_ALGORITHMS", "centroid_similarity", "class_balanced_subsample",
                     "class_centroids", "clustering_scores", "offdiag_stats", "purity_score"),
                    "clustering"),
    **dict.fromkeys(("CORRUPTIONS", "EXTRA_CORRUPTIONS", "SEVERITIES", "CifarCDataset",
                     "CorruptedDataset", "ImageNetCDataset", "available_corruptions", "corrupt",
                     "detect_corruption_layout"), "corruptions"),
    **dict.fromkeys(("extract_features", "owning_module"), "features"),
    **dict.fromkeys(("FEWSHOT_CLASSIFIERS", "Episodes", "fewshot_evaluate", "sample_episodes"),
                    "fewshot"),
    **dict.fromkeys(("knn_accuracy", "knn_classify", "knn_evaluate"), "knn"),
    **dict.fromkeys(("evaluate_checkpoint", "evaluate_after_pretrain"), "commands"),
    "EvalSession": "session",
}

__all__ = [
    "CLUSTERING_ALGORITHMS",
    "CORRUPTIONS",
    "EXTRA_CORRUPTIONS",
    "FEWSHOT_CLASSIFIERS",
    "SEVERITIES",
    "CifarCDataset",
    "CliOption",
    "CorruptedDataset",
    "Episodes",
    "EvalSession",
    "ImageNetCDataset",
    "ProtocolSpec",
    "ReportColumn",
    "all_protocols",
    "available_corruptions",
    "centroid_similarity",
    "class_balanced_subsample",
    "class_centroids",
    "clustering_scores",
    "corrupt",
    "detect_corruption_layout",
    "evaluate_after_pretrain",
    "evaluate_checkpoint",
    "extract_features",
    "fewshot_evaluate",
    "get_protocol",
    "knn_accuracy",
    "knn_classify",
    "knn_evaluate",
    "offdiag_stats",
    "owning_module",
    "protocol_names",
    "purity_score",
    "register_protocol",
    "sample_episodes",
    "unregister_protocol",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
