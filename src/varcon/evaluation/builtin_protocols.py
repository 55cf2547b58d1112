"""The built-in evaluation protocols, registered when :mod:`varcon.evaluation` is imported.

Each entry names its run function (imported when it runs), the config section it reads, its
results file and what the report shows of it: the layout of its results JSON lives here,
beside its registration, and nowhere else.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .registry import CliOption, ProtocolSpec, ReportColumn, register_protocol

__all__ = ["MAIN_CLUSTER_ALGORITHMS", "MAIN_CLUSTER_SCORES"]

MAIN_CLUSTER_ALGORITHMS = ("kmeans", "agglomerative_ward")  # in the report's first table
MAIN_CLUSTER_SCORES = ("ari", "nmi")
_SCORE_ORDER = ("ari", "nmi", "ami", "purity")
_SCORE_LABELS = {"ari": "ARI", "nmi": "NMI", "ami": "AMI"}
_ALG_SHORT = {"agglomerative_ward": "Ward", "kmeans": "k-means"}

Results = Mapping[str, Any]


def _top1_top5(name: str, label: str, main5: bool) -> Any:
    def columns(res: Results, target: str | None) -> list[ReportColumn]:
        return [ReportColumn(f"{name}.top1", f"{label} top-1 (%)", res.get("top1"), 2, True,
                             (0,), headline=label),
                ReportColumn(f"{name}.top5", f"{label} top-5 (%)", res.get("top5"), 2, main5,
                             (1,))]

    return columns


def _number(value: Any) -> float:
    """A task's count for sorting: the number, or 0 when it is not one."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return 0.0
    return float(value)


def _k_order(k: str) -> tuple[int, Any]:
    return (0, int(k)) if k.isdigit() else (1, k)


def _knn_columns(res: Results, target: str | None) -> list[ReportColumn]:
    """``top1`` / ``top5``: ``{k: accuracy}`` (a bare number in legacy files)."""
    out: list[ReportColumn] = []
    for which, main in (("top1", True), ("top5", False)):
        by_k = res.get(which)
        shown = which.replace("top", "top-")
        if isinstance(by_k, dict):
            out.extend(ReportColumn(f"knn.{which}.{k}", f"kNN {shown} k={k} (%)", v, 2, main,
                                    (which, *_k_order(str(k))),
                                    headline=f"kNN k={k}" if which == "top1" else "")
                       for k, v in by_k.items())
        else:
            out.append(ReportColumn(f"knn.{which}", f"kNN {shown} (%)", by_k, 2, main,
                                    (which, 0, 0), headline="kNN" if which == "top1" else ""))
    return out


def _cluster_columns(res: Results, target: str | None) -> list[ReportColumn]:
    """``algorithms``: ``{algorithm: {ari, nmi, ami, purity}}``, and the centroid
    similarity's off-diagonal mean and max."""
    out: list[ReportColumn] = []
    algorithms = res.get("algorithms")
    for alg, scores in (algorithms.items() if isinstance(algorithms, dict) else []):
        if not isinstance(scores, dict):
            continue
        alg_rank = (MAIN_CLUSTER_ALGORITHMS.index(alg) if alg in MAIN_CLUSTER_ALGORITHMS
                    else len(MAIN_CLUSTER_ALGORITHMS))
        for score, v in scores.items():
            main = alg in MAIN_CLUSTER_ALGORITHMS and score in MAIN_CLUSTER_SCORES
            score_rank = (_SCORE_ORDER.index(score) if score in _SCORE_ORDER
                          else len(_SCORE_ORDER))
            headline = (f"ARI {_ALG_SHORT.get(alg, alg)}"
                        if score == "ari" and alg in MAIN_CLUSTER_ALGORITHMS else "")
            out.append(ReportColumn(f"cluster.{alg}.{score}",
                                    f"{_SCORE_LABELS.get(score, score)} {alg}", v, 3, main,
                                    (alg_rank, alg, score_rank, score), headline=headline))
    for key in ("centroid_similarity_offdiag_mean", "centroid_similarity_offdiag_max"):
        label = "centroid cosine off-diagonal " + key.rsplit("_", 1)[1]
        out.append(ReportColumn(f"cluster.{key}", label, res.get(key), 3, False, (9, key)))
    return out


def _fewshot_columns(res: Results, target: str | None) -> list[ReportColumn]:
    """``tasks``: one ``{n_way, k_shot, classifier, mean, ci95}`` per task."""
    out: list[ReportColumn] = []
    tasks = res.get("tasks")
    for task in tasks if isinstance(tasks, list) else []:
        if not isinstance(task, dict):
            continue
        n, k, clf = task.get("n_way"), task.get("k_shot"), task.get("classifier", "?")
        name = f"{n}-way {k}-shot {clf}"
        order = (_number(n), _number(k), str(clf))
        out.append(ReportColumn(f"fewshot.{n}w{k}s.{clf}", f"few-shot {name} (%)",
                                task.get("mean"), 2, True, order,
                                headline=f"{n}-way {k}-shot" if clf == "ncm" else ""))
        out.append(ReportColumn(f"fewshot.{n}w{k}s.{clf}.ci95", f"few-shot {name} 95% CI",
                                task.get("ci95"), 2, False, (*order, "ci")))
    return out


def _transfer_columns(res: Results, target: str | None) -> list[ReportColumn]:
    return [ReportColumn(f"transfer.{target}.top1", f"transfer → {target} top-1 (%)",
                         res.get("top1"), 2, True, (target, 1)),
            ReportColumn(f"transfer.{target}.top5", f"transfer → {target} top-5 (%)",
                         res.get("top5"), 2, False, (target, 5))]


def _robustness_columns(res: Results, target: str | None) -> list[ReportColumn]:
    """Mean corruption accuracy, (relative) mCE, clean top-1 and each corruption's mean."""
    out = [
        ReportColumn("robustness.mca", "mean corruption accuracy (%)",
                     res.get("mean_corruption_accuracy"), 2, True, (0,),
                     headline="mCA"),
        ReportColumn("robustness.relative_mce", "relative mCE (%)", res.get("relative_mce"),
                     2, True, (1,), better="lower"),
        ReportColumn("robustness.mce", "mCE (%)", res.get("mce"), 2, False, (2,),
                     better="lower"),
        ReportColumn("robustness.clean_top1", "clean top-1 (robustness) (%)",
                     res.get("clean_top1"), 2, False, (3,)),
    ]
    per = res.get("per_corruption")
    for corruption, by_sev in (per.items() if isinstance(per, dict) else []):
        if isinstance(by_sev, dict):
            out.append(ReportColumn(f"robustness.{corruption}", f"{corruption} mean (%)",
                                    by_sev.get("mean"), 2, False, (4, str(corruption))))
    return out


_M = "varcon.evaluation"
BUILTIN = (
    ProtocolSpec("linear", "linear probe of a checkpoint's frozen encoder (saves the classifier)",
                 f"{_M}.linear:run_linear", "linear", label="linear probe",
                 report_columns=_top1_top5("linear", "linear", True), report_order=0),
    ProtocolSpec("knn", "weighted kNN accuracy of a checkpoint's features",
                 f"{_M}.protocols:run_knn", "knn", label="kNN", report_columns=_knn_columns,
                 report_order=1),
    ProtocolSpec("cluster",
                 "clustering scores (agglomerative, k-means) and class-centroid similarity",
                 f"{_M}.protocols:run_cluster", "cluster", label="clustering",
                 report_columns=_cluster_columns, report_order=2),
    ProtocolSpec("fewshot", "N-way K-shot episodes on frozen features",
                 f"{_M}.protocols:run_fewshot", "fewshot", label="few-shot",
                 report_columns=_fewshot_columns, report_order=3),
    ProtocolSpec("transfer", "linear probe on another dataset (data.dataset=... data.root=...)",
                 f"{_M}.protocols:run_transfer", "linear", results_file="transfer_*.json",
                 report_columns=_transfer_columns, report_order=4,
                 command_args="data.dataset={target} data.root=..."),
    ProtocolSpec("robustness", "accuracy of encoder + probe on corrupted test images",
                 f"{_M}.robustness:run_robustness", "robustness",  # optional package
                 options=(CliOption("--baseline", "run directory whose robustness.json is the "
                                    "baseline of mCE / relative mCE"),),
                 report_columns=_robustness_columns, report_order=5),
    ProtocolSpec("finetune",
                 "fine-tune encoder + linear head end to end (cross-entropy, lower encoder lr)",
                 f"{_M}.finetune:run_finetune", "finetune", label="fine-tuning",
                 report_columns=_top1_top5("finetune", "fine-tune", False), report_order=0.5),
)

for _spec in BUILTIN:
    register_protocol(_spec)
