"""Fake run directories that follow the run-directory contract (docs: schema) file by file.

``write_run(path, method=..., seed=..., ...)`` writes config.yaml (the real config tree,
from ``varcon.runtime.config``), metrics.jsonl, tau2/epoch_<k>.npy, every eval JSON in its
envelope and the eval/*.npy / embeddings_test.npz arrays, with plausible values.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from varcon.runtime.config import Config, config_to_dict

ALL_EVALS = ("linear", "knn", "cluster", "fewshot", "robustness", "transfer")
CIFAR10 = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
           "truck"]
CORRUPTIONS = ("gaussian_noise", "motion_blur", "fog")


def _envelope(protocol: str, method: str, class_names: list[str], settings: dict[str, Any],
              results: dict[str, Any], eval_dataset: str = "cifar10") -> dict[str, Any]:
    return {"protocol": protocol, "format_version": 1, "checkpoint": "checkpoints/last.pt",
            "method": method, "encoder": "small_cnn", "dataset": "cifar10",
            "eval_dataset": eval_dataset, "features": "encoder", "class_names": class_names,
            "settings": settings, "results": results, "seconds": 1.5,
            "created": "2026-11-23T12:00:00"}


def _write_json(path: Path, obj: dict[str, Any]) -> None:
    path.write_text(json.dumps(obj, indent=2))


def write_run(
    path: Path,
    *,
    method: str = "varcon",
    seed: int = 0,
    name: str | None = None,
    overrides: dict[str, dict[str, Any]] | None = None,
    evals: Iterable[str] = ALL_EVALS,
    class_names: list[str] | None = None,
    epochs: int = 6,
    tau2_epochs: Iterable[int] | None = (1, 3, 6),
    arrays: bool = True,
    n_points: int = 150,
    linear_top1: float = 90.0,
    knn_top1: float = 88.0,
    kmeans_ari: float = 0.70,
    fewshot_mean: float = 80.0,
    mca: float = 70.0,
    transfer_target: str = "cifar100",
    finetune_top1: float = 93.0,
) -> Path:
    """Create a run directory at ``path``; returns it. ``tau2_epochs=None`` writes no tau2/."""
    rng = np.random.default_rng(seed + 100 * len(method))
    names = class_names or CIFAR10
    c = len(names)
    cfg = config_to_dict(Config(name=name or f"{method}-s{seed}", method=method, seed=seed,
                                output_dir=str(path)))
    cfg["data"]["dataset"] = "cifar10"
    for section, values in (overrides or {}).items():
        if isinstance(values, dict):
            cfg[section].update(values)
        else:
            cfg[section] = values
    path.mkdir(parents=True)
    (path / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    (path / "checkpoints").mkdir()

    lines = []
    for e in range(1, epochs + 1):
        rec: dict[str, Any] = {"epoch": e, "lr": 0.5 * (1 + np.cos(np.pi * e / epochs)) / 2,
                               "steps": 10, "skipped_steps": 0, "epoch_time": 2.0,
                               "images_per_s": 500.0, "loss": 3.0 / e}
        if method == "varcon":
            rec.update({"kl": 1.0 / e, "nll": 2.0 / e, "tau2_mean": 0.085 + 0.004 * e,
                        "tau2_std": 0.006, "confidence_mean": 0.3 + 0.1 * e})
        lines.append(json.dumps(rec))
    lines.append(json.dumps({"epoch": epochs, "val_knn_top1": knn_top1}))
    (path / "metrics.jsonl").write_text("\n".join(lines) + "\n")

    if method == "varcon" and tau2_epochs is not None:
        (path / "tau2").mkdir()
        for e in tau2_epochs:
            conf = rng.beta(1 + e, 2.0, size=500)  # p(r|z) grows with the epoch
            tau2 = (0.1 - 0.02) + 2 * 0.02 * conf
            np.save(path / "tau2" / f"epoch_{e}.npy", tau2.astype(np.float32))

    ev = path / "eval"
    ev.mkdir()
    evals = set(evals)
    if "linear" in evals:
        _write_json(ev / "linear.json", _envelope(
            "linear", method, names, {"epochs": 10, "lr": 5.0},
            {"top1": linear_top1, "top5": 99.0, "n_test": 1000}))
    if "finetune" in evals:  # not in ALL_EVALS: written when asked for
        _write_json(ev / "finetune.json", _envelope(
            "finetune", method, names, {"epochs": 5, "lr": 0.1, "encoder_lr_scale": 0.1},
            {"top1": finetune_top1, "top5": 99.5, "n_test": 1000, "train_loss": 0.2,
             "train_top1": 95.0, "history": {"train_loss": [0.5, 0.2]}}))
    if "knn" in evals:
        _write_json(ev / "knn.json", _envelope(
            "knn", method, names, {"k": [20, 200], "temperature": 0.1},
            {"top1": {"20": knn_top1, "200": knn_top1 - 1}, "top5": {"20": 99.0, "200": 99.5}}))
    if "cluster" in evals:
        algs = {a: {"ari": kmeans_ari - 0.05 * i, "nmi": 0.75, "ami": 0.74, "purity": 0.8}
                for i, a in enumerate(("kmeans", "agglomerative_ward",
                                       "agglomerative_average_cosine"))}
        _write_json(ev / "cluster.json", _envelope(
            "cluster", method, names, {"num_clusters": c},
            {"n_samples": 1000, "num_clusters": c, "algorithms": algs,
             "centroid_similarity_offdiag_mean": 0.12, "centroid_similarity_offdiag_max": 0.55}))
    if "fewshot" in evals:
        _write_json(ev / "fewshot.json", _envelope(
            "fewshot", method, names, {"episodes": 100},
            {"tasks": [{"n_way": 5, "k_shot": 1, "n_query": 15, "episodes": 100,
                        "classifier": "ncm", "mean": fewshot_mean, "ci95": 0.4},
                       {"n_way": 5, "k_shot": 5, "n_query": 15, "episodes": 100,
                        "classifier": "ncm", "mean": fewshot_mean + 8, "ci95": 0.3}]}))
    if "transfer" in evals:
        _write_json(ev / f"transfer_{transfer_target}.json", _envelope(
            "transfer", method, [f"t{i}" for i in range(100)], {"epochs": 10},
            {"top1": 60.0, "top5": 85.0, "source_dataset": "cifar10",
             "target_dataset": transfer_target, "num_classes": 100},
            eval_dataset=transfer_target))
    if "robustness" in evals:
        per = {}
        for i, corr in enumerate(CORRUPTIONS):
            sev = {str(s): mca + 15 - 5 * s - 2 * i for s in range(1, 6)}
            sev["mean"] = float(np.mean([sev[str(s)] for s in range(1, 6)]))
            per[corr] = sev
        _write_json(ev / "robustness.json", _envelope(
            "robustness", method, names, {"severities": [1, 2, 3, 4, 5]},
            {"source": "generated", "clean_top1": linear_top1,
             "mean_corruption_accuracy": mca, "per_corruption": per,
             "mce": None, "relative_mce": None, "baseline": None}))

    if arrays:
        d = 16
        means = rng.normal(size=(c, d))
        labels = np.arange(n_points) % c
        feats = means[labels] + 0.3 * rng.normal(size=(n_points, d))
        np.savez(ev / "embeddings_test.npz", features=feats.astype(np.float16),
                 labels=labels.astype(np.int64))
        cents = np.stack([feats[labels == k].mean(0) for k in range(c)])
        cents /= np.linalg.norm(cents, axis=1, keepdims=True)
        np.save(ev / "class_centroids.npy", cents.astype(np.float32))
        np.save(ev / "centroid_similarity.npy", (cents @ cents.T).astype(np.float32))
        cm = rng.integers(0, 5, size=(c, c)) + np.diag(rng.integers(60, 100, size=c))
        np.save(ev / "linear_confusion.npy", cm.astype(np.int64))
    return path


def png_is_drawn(path: Path) -> None:
    """Assert ``path`` is a real, non-blank PNG: PIL reads it, it is several KB, and its
    pixels vary (a blank canvas has std 0) with more than 1% non-white pixels."""
    from PIL import Image

    assert path.stat().st_size > 5_000, f"{path.name}: only {path.stat().st_size} bytes"
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.width >= 300 and image.height >= 300
        grey = np.asarray(image.convert("L"), dtype=np.float64)
    assert grey.std() > 5.0, f"{path.name}: nearly uniform image"
    assert (grey < 250).mean() > 0.01, f"{path.name}: almost all white"
