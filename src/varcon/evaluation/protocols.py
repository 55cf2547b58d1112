"""The evaluation protocols behind the commands: each reads the session's features, computes
its figures on rank 0, and writes one result file (``docs/evaluation.md``).

Every ``run_*`` returns the ``results`` dict it wrote (rank 0; other ranks get ``{}`` where
the work is rank-0 only). Feature extraction runs on every rank (sharded, then gathered).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from varcon.data.subsets import resolve_classes

from .clustering import (
    centroid_similarity,
    class_balanced_subsample,
    class_centroids,
    clustering_scores,
    offdiag_stats,
)
from .fewshot import fewshot_evaluate
from .knn import knn_evaluate
from .linear import run_linear
from .results import atomic_write_bytes, save_array, write_result
from .session import EvalSession, compact_float, dataset_label

__all__ = ["EMBEDDING_SAMPLE", "run_cluster", "run_fewshot", "run_knn", "run_transfer"]

EMBEDDING_SAMPLE = 2000  # test embeddings kept for t-SNE / UMAP figures


def run_knn(session: EvalSession) -> dict[str, Any]:
    """Weighted kNN (Wu et al. 2018) of test features against training features."""
    t0 = time.perf_counter()
    kind = session.cfg.eval.features
    train_f, train_y = session.features("train", kind)
    test_f, test_y = session.features("test", kind)
    session.prepare_output()
    if not session.ctx.is_main:
        return {}
    knn = session.cfg.knn
    results = knn_evaluate(train_f, train_y, test_f, test_y, num_classes=session.num_classes,
                           ks=tuple(knn.k), temperature=knn.temperature)
    settings = {"k": list(knn.k), "temperature": knn.temperature, "similarity": "cosine",
                "weights": "exp(s / temperature)", "n_train": int(train_y.numel()),
                "n_test": int(test_y.numel())}
    write_result(session.out_dir, "knn", results=results, settings=settings,
                 context=session.context(kind), seconds=time.perf_counter() - t0)
    return results


def run_cluster(session: EvalSession) -> dict[str, Any]:
    """Agglomerative (Ward; average linkage on cosine) and k-means clusterings of the test
    features against the labels, the class-centroid similarity matrix and a class-balanced
    sample of embeddings for figures."""
    t0 = time.perf_counter()
    kind = session.cfg.eval.features
    feats, labels = session.features("test", kind)
    session.prepare_output()
    if not session.ctx.is_main:
        return {}
    cc = session.cfg.cluster
    present = torch.unique(labels)
    results = clustering_scores(feats, labels, num_classes=int(present.numel()), seed=cc.seed,
                                max_samples=cc.max_samples, algorithms=tuple(cc.algorithms))
    centroids = class_centroids(feats, labels, session.num_classes) \
        if present.numel() == session.num_classes else None
    if centroids is not None:
        sim = centroid_similarity(centroids)
        results.update(offdiag_stats(sim))
        save_array(session.out_dir / "centroid_similarity.npy",
                   sim.numpy().astype(np.float32))
        save_array(session.out_dir / "class_centroids.npy",
                   centroids.numpy().astype(np.float32))
    keep = class_balanced_subsample(labels.numpy(), EMBEDDING_SAMPLE, seed=cc.seed)
    _save_embeddings(session, feats[keep], labels[keep])
    settings = {"algorithms": list(cc.algorithms), "max_samples": cc.max_samples,
                "seed": cc.seed, "split": "test", "normalisation": "L2",
                "num_clusters": "classes present in the split"}
    write_result(session.out_dir, "cluster", results=results, settings=settings,
                 context=session.context(kind), seconds=time.perf_counter() - t0)
    return results


def _save_embeddings(session: EvalSession, feats: torch.Tensor, labels: torch.Tensor) -> None:
    import io

    buffer = io.BytesIO()
    np.savez(buffer, features=compact_float(feats.numpy()), labels=labels.numpy())
    atomic_write_bytes(session.out_dir / "embeddings_test.npz", buffer.getvalue())


def run_fewshot(session: EvalSession) -> dict[str, Any]:
    """N-way K-shot episodes on frozen test features (nearest class mean, logistic
    regression), mean accuracy with a 95% confidence interval."""
    t0 = time.perf_counter()
    kind = session.cfg.eval.features
    fc = session.cfg.fewshot
    classes = None
    if fc.classes is not None:
        try:
            classes = resolve_classes(fc.classes, session.class_names, key="fewshot.classes")
        except ValueError as exc:
            raise ValueError(
                f"{exc}. If the pre-training excluded these classes (data.classes / "
                "data.exclude_classes), lift that restriction for evaluation, e.g. "
                "data.exclude_classes=null data.classes=null"
            ) from exc
    feats, labels = session.features("test", kind)
    session.prepare_output()
    if not session.ctx.is_main:
        return {}
    tasks = fewshot_evaluate(feats, labels, n_way=fc.n_way, shots=tuple(fc.shots),
                             n_query=fc.n_query, episodes=fc.episodes,
                             classifiers=tuple(fc.classifiers), center=fc.center,
                             classes=classes, seed=fc.seed)
    results = {"tasks": tasks}
    settings = {"n_way": fc.n_way, "shots": list(fc.shots), "n_query": fc.n_query,
                "episodes": fc.episodes, "classifiers": list(fc.classifiers),
                "center": fc.center, "seed": fc.seed, "split": "test",
                "classes": None if classes is None else [session.class_names[i]
                                                          for i in classes]}
    write_result(session.out_dir, "fewshot", results=results, settings=settings,
                 context=session.context(kind), seconds=time.perf_counter() - t0)
    return results


def run_transfer(session: EvalSession) -> dict[str, Any]:
    """Linear probe of the frozen encoder on the session's data (another dataset than the
    one it was trained on): writes ``transfer_<target>.json``."""
    target = dataset_label(session.cfg)
    name = f"transfer_{_safe(target)}"
    extra = {"source_dataset": session.source["dataset"], "target_dataset": target,
             "target_root": session.cfg.data.root}
    return run_linear(session, name=name, protocol="transfer", settings_extra=extra,
                      results_extra={
        "source_dataset": extra["source_dataset"], "target_dataset": target,
        "num_classes": session.num_classes})


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text) or "data"
