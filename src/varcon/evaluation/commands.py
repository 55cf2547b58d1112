"""Entry points of the evaluation commands and of the evaluation that ends pre-training.

``evaluate_checkpoint("knn", "runs/RUN")`` is what ``varcon knn --checkpoint runs/RUN`` runs;
``evaluate_after_pretrain`` is called by the training loop with the network in memory (one
way: evaluation never imports the training loop).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from .knn import knn_evaluate
from .linear import run_linear
from .protocols import run_cluster, run_knn
from .registry import get_protocol
from .session import EvalSession, eval_session

__all__ = ["evaluate_after_pretrain", "evaluate_checkpoint", "online_knn"]


def evaluate_checkpoint(
    protocol: str,
    checkpoint: str | Path,
    overrides: list[str] | None = None,
    output_dir: str | Path | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Run one registered evaluation protocol (:func:`~varcon.evaluation.protocol_names`) on
    a checkpoint (file or run directory).

    ``options`` are the protocol's own command-line options by name (robustness:
    ``baseline=RUN_DIR``); ``None`` values are ignored. Returns ``{"results": ...,
    "output_dir": ..., "protocol": ..., "eval_dataset": ..., "config": ...}`` (results on
    rank 0; ``config``: the :class:`~varcon.runtime.config.Config` evaluated with, the
    checkpoint's own with ``overrides``).
    """
    spec = get_protocol(protocol)  # ValueError naming the protocols
    kwargs = spec.check_options(options)  # before any work
    with eval_session(checkpoint, overrides, output_dir) as session:
        session.prepare_output()
        results = spec.run_function()(session, **kwargs)
        return {"protocol": protocol, "results": results, "output_dir": str(session.out_dir),
                "eval_dataset": session.context()["eval_dataset"], "config": session.cfg}


NO_LABELS = (
    "no labelled training image: accuracy (kNN, clustering, the linear probe) needs a "
    "labelled split, <root>/train/<class>/ and <root>/val/<class>/ folders. Evaluate this "
    "encoder on one with `varcon knn --checkpoint RUN data.root=TREE data.labels=use` (and "
    "`varcon linear ...`); the label-free diagnostics above (effective rank; for varcon_ssl "
    "the pseudo-class entropy and dead prototypes) are in RUN/metrics.jsonl")


def evaluate_after_pretrain(
    session: EvalSession,
    on_result: Callable[[str, dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """kNN and clustering (when enabled) and the linear probe of a training run's network
    into ``session.out_dir``; the training split is encoded once for all three. Returns the
    headline figures. ``on_result(protocol, results)`` is called after each protocol with the
    results it wrote (the training loop hands them to its experiment trackers)."""
    cfg = session.cfg
    report = on_result or (lambda protocol, results: None)
    if not session.data.has_labels:
        if session.ctx.is_main:
            print(NO_LABELS, flush=True)
        return {}
    session.prepare_output()
    summary: dict[str, Any] = {}
    if cfg.knn.enabled:
        knn = run_knn(session)
        report("knn", knn)
        for k, value in knn.get("top1", {}).items():
            summary[f"knn_top1@{k}"] = value
    if cfg.cluster.enabled:
        cluster = run_cluster(session)
        report("cluster", cluster)
        scores = cluster.get("algorithms", {})
        for algo, short in (("kmeans", "kmeans"), ("agglomerative_ward", "ward")):
            if algo in scores:
                summary[f"{short}_nmi"] = scores[algo]["nmi"]
                summary[f"{short}_ari"] = scores[algo]["ari"]
    linear = run_linear(session)
    report("linear", linear)
    summary["linear_top1"] = linear["top1"]
    summary["linear_top5"] = linear["top5"]
    return summary


def online_knn(session: EvalSession) -> dict[str, float]:
    """kNN top-1 (the first of ``knn.k``) of the test split against the training split, for
    the network as it is now: ``{"val_knn_top1": ...}`` on rank 0, ``{}`` elsewhere.

    Used by ``train.eval_every`` to follow convergence. Features are encoded afresh and
    neither kept nor written (the encoder changes between calls); the splits are the
    session's, loaded once. Every rank encodes its shard.
    """
    cfg = session.cfg
    if not session.data.has_labels:
        return {}
    kind = cfg.eval.features
    train_f, train_y = session.encode_dataset(session.split("train"), kind, progress=False)
    test_f, test_y = session.encode_dataset(session.split("test"), kind, progress=False)
    if not session.ctx.is_main:
        return {}
    k = cfg.knn.k[0]
    scores = knn_evaluate(train_f, train_y, test_f, test_y, num_classes=session.num_classes,
                          ks=(k,), temperature=cfg.knn.temperature)
    return {"val_knn_top1": scores["top1"][str(k)]}
