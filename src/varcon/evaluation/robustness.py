"""Corruption robustness: the encoder plus the linear probe trained on clean images, tested
on corrupted test images (Hendrycks & Dietterich 2019, ImageNet-C / CIFAR-10-C).

Corrupted images come from the published benchmark when ``robustness.root`` points at it
(CIFAR-10-C / CIFAR-100-C ``<corruption>.npy`` files, or an ImageNet-C tree), otherwise they
are generated from the test split with :func:`varcon.evaluation.corruptions.corrupt`, image
by image inside the DataLoader workers (never all held in memory), seeded per image.

Scores, per corruption c and severity s, with top-1 error E = 100 - accuracy:

* mean corruption accuracy: the mean of the accuracies over every (c, s);
* CE_c = sum_s E_{c,s} / sum_s E^base_{c,s} and mCE = mean_c CE_c (x 100, percent);
* relative CE_c = sum_s (E_{c,s} - E_clean) / sum_s (E^base_{c,s} - E^base_clean) and
  relative mCE = mean_c (x 100), both against a ``--baseline`` run's ``robustness.json``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .clustering import class_balanced_subsample
from .corruptions import (
    CORRUPTIONS,
    EXTRA_CORRUPTIONS,
    CifarCDataset,
    CorruptedDataset,
    ImageNetCDataset,
    available_corruptions,
    detect_corruption_layout,
)
from .linear import load_probe, probe_accuracy
from .results import write_result
from .session import EvalSession

__all__ = ["corruption_errors", "read_baseline", "run_robustness"]


def _probe_path(session: EvalSession) -> Path:
    path = session.out_dir / "linear_probe.pt"
    if not path.is_file():
        raise FileNotFoundError(
            f"no linear probe in {session.out_dir}: robustness tests the encoder with the probe "
            f"trained on clean images. Run `varcon linear --checkpoint {session.checkpoint}` "
            "first (with the same --output-dir)"
        )
    return path


def read_baseline(path: str | Path) -> dict[str, Any]:
    """The ``results`` of a baseline's robustness.json (a run dir, its eval/ or the file)."""
    p = Path(path)
    candidates = [p] if p.is_file() else [p / "eval" / "robustness.json", p / "robustness.json"]
    for c in candidates:
        if c.is_file():
            try:
                record = json.loads(c.read_text(encoding="utf-8"))
                return record["results"]
            except (OSError, ValueError, KeyError) as exc:
                raise ValueError(f"baseline {c} is not a robustness result: {exc}") from exc
    raise FileNotFoundError(
        f"--baseline {path}: no eval/robustness.json there; run `varcon robustness "
        f"--checkpoint {path}` first"
    )


def corruption_errors(results: dict[str, Any], baseline: dict[str, Any]) -> dict[str, Any]:
    """mCE and relative mCE (percent) of ``results`` against ``baseline`` over the
    corruptions and severities both hold; ``ValueError`` when they share none."""
    ce, rel = [], []
    clean, clean_b = 100.0 - results["clean_top1"], 100.0 - baseline["clean_top1"]
    for name, by_sev in results["per_corruption"].items():
        base = baseline.get("per_corruption", {}).get(name)
        if not base:
            continue
        sevs = [s for s in by_sev if s != "mean" and s in base]
        if not sevs:
            continue
        err = np.array([100.0 - by_sev[s] for s in sevs])
        err_b = np.array([100.0 - base[s] for s in sevs])
        if err_b.sum() > 0:
            ce.append(err.sum() / err_b.sum())
        denom = (err_b - clean_b).sum()
        if abs(denom) > 1e-12:
            rel.append((err - clean).sum() / denom)
    if not ce:
        raise ValueError("the baseline shares no corruption and severity with this run")
    return {"mce": 100.0 * float(np.mean(ce)),
            "relative_mce": 100.0 * float(np.mean(rel)) if rel else None}


def _corruption_names(session: EvalSession, layout: str | None) -> list[str]:
    requested = session.cfg.robustness.corruptions
    valid = list(CORRUPTIONS) + list(EXTRA_CORRUPTIONS)
    if layout is not None:
        assert session.cfg.robustness.root is not None  # the layout was detected in it
        valid = available_corruptions(session.cfg.robustness.root)
    if requested is None:
        return [c for c in CORRUPTIONS if c in valid]
    unknown = [c for c in requested if c not in valid]
    if unknown:
        raise ValueError(f"robustness.corruptions: unknown or unavailable {unknown}; valid: "
                         f"{', '.join(valid)}")
    return list(requested)


def run_robustness(session: EvalSession, baseline: str | Path | None = None) -> dict[str, Any]:
    """Accuracy per corruption and severity; writes ``robustness.json``."""
    t0 = time.perf_counter()
    rc = session.cfg.robustness
    classifier, _ = load_probe(_probe_path(session))
    baseline_results = read_baseline(baseline) if baseline is not None else None
    layout = detect_corruption_layout(rc.root) if rc.root else None
    names = _corruption_names(session, layout)
    classifier = classifier.to(session.ctx.device)

    test_set = session.test_set()
    test_f, test_y = session.features("test", "encoder")
    keep = None
    if rc.max_images is not None and rc.max_images < len(test_y) and layout is None:
        keep = torch.from_numpy(class_balanced_subsample(test_y.numpy(), rc.max_images,
                                                         seed=rc.seed))
        test_f, test_y = test_f[keep], test_y[keep]
        test_set = torch.utils.data.Subset(test_set, keep.tolist())
    clean = probe_accuracy(classifier, test_f, test_y, session.num_classes)["top1"]

    from varcon.runtime.logger import Progress

    bar = Progress(len(names) * len(rc.severities), "robustness",
                   mode=session.cfg.train.progress, enabled=session.ctx.is_main)
    per: dict[str, dict[str, float]] = {}
    for name in names:
        per[name] = {}
        for severity in rc.severities:
            if layout == "cifar-c":
                assert rc.root is not None  # the layout was detected in it
                dataset: Any = CifarCDataset(rc.root, name, severity)
            elif layout == "imagenet-c":
                assert rc.root is not None
                dataset = ImageNetCDataset(rc.root, name, severity, session.class_names)
            else:
                dataset = CorruptedDataset(test_set, name, severity, seed=rc.seed)
            feats, labels = session.encode_dataset(dataset, "encoder", progress=False)
            per[name][str(severity)] = probe_accuracy(
                classifier, feats, labels, session.num_classes)["top1"]
            bar.update(**{f"{name[:12]}@{severity}": per[name][str(severity)]})
        per[name]["mean"] = float(np.mean([per[name][str(s)] for s in rc.severities]))
    bar.close()
    session.prepare_output()
    if not session.ctx.is_main:
        return {}
    results: dict[str, Any] = {
        "source": layout or "generated",
        "clean_top1": clean,
        "mean_corruption_accuracy": float(np.mean([v["mean"] for v in per.values()])),
        "per_corruption": per, "mce": None, "relative_mce": None, "baseline": None,
    }
    if baseline_results is not None:
        results.update(corruption_errors(results, baseline_results))
        results["baseline"] = str(baseline)
    settings = {"corruptions": names, "severities": list(rc.severities), "seed": rc.seed,
                "root": rc.root, "max_images": rc.max_images,
                "n_images": int(test_y.numel()) if layout is None else None,
                "probe": str(_probe_path(session))}
    write_result(session.out_dir, "robustness", results=results, settings=settings,
                 context=session.context("encoder"), seconds=time.perf_counter() - t0)
    return results
