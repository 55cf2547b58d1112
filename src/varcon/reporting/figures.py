"""Figures of one run directory (``varcon figures RUN_DIR``).

Each figure is drawn only when its input file exists, and a broken input stops only its own
figure: the problem goes to :attr:`FigureList.warnings` and the other figures are still drawn.
Every PNG is written atomically (temporary file, then ``os.replace``). ``figures.json`` next to
the PNGs records, per figure, its title, what it shows, the files it was drawn from and the
settings used (the report prints these under each figure).

matplotlib is an optional extra (``pip install "varcon[plots]"``); it is imported only when a
figure is drawn, and figures are rendered on Agg canvases without touching pyplot's global
backend. UMAP is drawn only when ``umap-learn`` is installed; t-SNE always.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from varcon._text import shorten

from .runs import (
    atomic_write_bytes,
    atomic_write_text,
    number,
    read_config,
    read_eval_files,
    read_metrics,
    series,
)

__all__ = [
    "DPI",
    "MANIFEST_NAME",
    "FigureList",
    "FigureRecord",
    "PlotsNotInstalledError",
    "make_figures",
    "read_manifest",
]

DPI = 120
MANIFEST_NAME = "figures.json"
TSNE_SEED = 0
MAX_EMBEDDING_POINTS = 5000  # the schema promises <= 2000; a larger file is subsampled
MAX_TICK_LABELS = 30  # class names on matrix axes up to this many classes
MAX_LEGEND_CLASSES = 30
MAX_HIST_EPOCHS = 8  # tau2 histograms overlaid in one panel
SINGLE_THREAD_TSNE_BELOW = 1000

_TAU2_RE = re.compile(r"^epoch_(\d+)\.npy$")


class PlotsNotInstalledError(ImportError):
    """matplotlib (the ``plots`` extra) is not installed."""


@dataclass
class FigureRecord:
    """What one PNG shows and where it came from (an entry of ``figures.json``)."""

    file: str
    title: str
    description: str
    sources: list[str]
    settings: dict[str, Any] = field(default_factory=dict)


class FigureList(list[Path]):  # callers can treat it as the plain list of written files
    """The PNGs written (a ``list[Path]``), plus:

    ``records``: a :class:`FigureRecord` per PNG; ``skipped``: figures not drawn because their
    input is absent (not an error); ``warnings``: inputs that exist but could not be used;
    ``manifest``: the path of ``figures.json``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.records: list[FigureRecord] = []
        self.skipped: list[str] = []
        self.warnings: list[str] = []
        self.manifest: Path | None = None


def _matplotlib() -> tuple[Any, Any, Any]:
    """(Figure, FigureCanvasAgg, colormaps), or PlotsNotInstalledError with the fix."""
    try:
        import matplotlib
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise PlotsNotInstalledError(
            'figures need matplotlib, which is not installed: pip install "varcon[plots]"'
        ) from exc
    return Figure, FigureCanvasAgg, matplotlib.colormaps


@dataclass
class _Ctx:
    run_dir: Path
    out_dir: Path
    config: dict[str, Any]
    evals: dict[str, dict[str, Any]]
    result: FigureList
    mpl: tuple[Any, Any, Any]
    metrics_cache: tuple[list[dict[str, Any]], bool] | None = None
    eval_dir: Path | None = None  # default RUN_DIR/eval

    def eval_path(self, name: str) -> Path:
        return (self.eval_dir or self.run_dir / "eval") / name

    @property
    def name(self) -> str:
        return str(self.config.get("name") or self.run_dir.name)

    def warn(self, text: str) -> None:
        self.result.warnings.append(text)

    def skip(self, text: str) -> None:
        self.result.skipped.append(text)

    def rel(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.run_dir))
        except ValueError:
            return str(path)

    def figure(self, **kwargs: Any) -> Any:
        figure_cls, canvas_cls, _ = self.mpl
        fig = figure_cls(layout="constrained", **kwargs)
        canvas_cls(fig)
        return fig

    def save(self, fig: Any, record: FigureRecord) -> None:
        """Render ``fig`` to PNG in memory, then write it atomically."""
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=DPI)
        path = self.out_dir / record.file
        atomic_write_bytes(path, buffer.getvalue())
        self.result.append(path)
        self.result.records.append(record)

    def class_names(self, count: int, exact: bool = True) -> list[str]:
        """Names of the training dataset's classes, from an eval JSON that evaluated on it
        (transfer files name another dataset's classes), else "0", "1", ...

        ``exact``: the list must have ``count`` names (a [C, C] matrix); otherwise at least
        ``count`` (labels of a subsample index the full class list)."""
        data = self.config.get("data")
        trained_on = data.get("dataset") if isinstance(data, dict) else None
        for prefer_same in (True, False):
            for key, env in self.evals.items():
                names = env.get("class_names")
                if not isinstance(names, list) or len(names) < count or (
                        exact and len(names) != count):
                    continue
                same = (env.get("eval_dataset") in (None, trained_on, env.get("dataset"))
                        and not key.startswith("transfer:"))
                if same or not prefer_same:
                    return [str(n) for n in names]
        return [str(i) for i in range(count)]

    def eval_info(self, key: str) -> dict[str, Any]:
        """The settings of the eval JSON a figure's matrix belongs to (for the manifest)."""
        env = self.evals.get(key)
        if not env:
            return {}
        info: dict[str, Any] = {k: env[k] for k in ("features", "eval_dataset", "checkpoint")
                                if k in env}
        if env.get("settings"):
            info["settings"] = env["settings"]
        return info


def _loss_tau(ctx: _Ctx) -> tuple[float | None, float | None]:
    loss = ctx.config.get("loss") or {}
    if not isinstance(loss, dict):
        return None, None
    return number(loss.get("temperature")), number(loss.get("epsilon"))


def _tau_reference_lines(ctx: _Ctx, ax: Any, vertical: bool) -> dict[str, Any]:
    tau1, eps = _loss_tau(ctx)
    if tau1 is None or eps is None:
        return {}
    line = ax.axvline if vertical else ax.axhline
    line(tau1 - eps, color="0.35", linestyle="--", linewidth=1.2,
         label=f"τ1 − ε = {tau1 - eps:g} (p(r|z) = 0)")
    line(tau1 + eps, color="0.35", linestyle=":", linewidth=1.5,
         label=f"τ1 + ε = {tau1 + eps:g} (p(r|z) = 1)")
    return {"loss.temperature": tau1, "loss.epsilon": eps}


def _tau2_arrays(ctx: _Ctx) -> tuple[dict[int, np.ndarray], list[str]]:
    tau_dir = ctx.run_dir / "tau2"
    arrays: dict[int, np.ndarray] = {}
    sources: list[str] = []
    if not tau_dir.is_dir():
        return arrays, sources
    files = [(int(m.group(1)), p) for p in tau_dir.iterdir() if (m := _TAU2_RE.match(p.name))]
    for epoch, path in sorted(files):
        try:
            values = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            ctx.warn(f"{ctx.rel(path)}: unreadable ({type(exc).__name__}: {exc}); epoch "
                     f"{epoch} left out of the tau2 figures")
            continue
        if not np.issubdtype(values.dtype, np.number):
            ctx.warn(f"{ctx.rel(path)}: dtype {values.dtype} is not numeric; epoch {epoch} "
                     "left out")
            continue
        values = values.astype(np.float64).ravel()
        finite = values[np.isfinite(values)]
        if finite.size < values.size:
            ctx.warn(f"{ctx.rel(path)}: {values.size - finite.size} non-finite values dropped")
        if finite.size == 0:
            ctx.warn(f"{ctx.rel(path)}: no finite values; epoch {epoch} left out")
            continue
        arrays[epoch] = finite
        sources.append(ctx.rel(path))
    return arrays, sources


def _pick_epochs(epochs: Sequence[int], limit: int) -> list[int]:
    """At most ``limit`` epochs, evenly spaced, always the first and the last."""
    if len(epochs) <= limit:
        return list(epochs)
    idx = np.unique(np.round(np.linspace(0, len(epochs) - 1, limit)).astype(int))
    return [epochs[i] for i in idx]


def _fig_tau2(ctx: _Ctx) -> None:
    arrays, sources = _tau2_arrays(ctx)
    records, _ = _metrics(ctx)
    m_epochs, m_mean = series(records, "tau2_mean")
    s_epochs, m_std = series(records, "tau2_std")
    if not arrays and not m_epochs:
        ctx.skip("tau2: no tau2/epoch_<k>.npy files and no tau2_mean in metrics.jsonl "
                 "(recorded by varcon runs only)")
        return
    _, _, cmaps = ctx.mpl

    if arrays:
        epochs = sorted(arrays)
        shown = _pick_epochs(epochs, MAX_HIST_EPOCHS)
        lo = min(float(arrays[e].min()) for e in shown)
        hi = max(float(arrays[e].max()) for e in shown)
        if hi - lo < 1e-9:  # eps = 0: every tau2 equals tau1
            lo, hi = lo - 1e-3, hi + 1e-3
        bins = np.linspace(lo, hi, 51)
        cmap = cmaps["viridis"]
        fig = ctx.figure(figsize=(8, 4.8))
        ax = fig.add_subplot()
        for i, epoch in enumerate(shown):
            colour = cmap(i / max(1, len(shown) - 1))
            ax.hist(arrays[epoch], bins=bins, density=True, histtype="step", linewidth=1.6,
                    color=colour, label=f"epoch {epoch} (n={arrays[epoch].size})")
        settings = _tau_reference_lines(ctx, ax, vertical=True)
        ax.set_xlabel("τ2 (per-sample adaptive temperature)")
        ax.set_ylabel("density")
        note = "" if len(shown) == len(epochs) else f", {len(shown)} of {len(epochs)} epochs"
        ax.set_title(f"{ctx.name}: distribution of τ2 per epoch{note}")
        ax.legend(title="recorded epoch", fontsize="small")
        ax.grid(alpha=0.3)
        settings.update({"epochs_shown": shown, "bins": 50, "normalisation": "density"})
        ctx.save(fig, FigureRecord(
            file="tau2_histograms.png",
            title="τ2 distribution per epoch",
            description=("Histogram of the per-sample temperature τ2 = (τ1 − ε) + 2ε·p(r|z) "
                         "for each recorded epoch (colour: epoch, dark to light = early to "
                         "late); dashed lines mark the bounds τ1 ± ε."),
            sources=sources, settings=settings))

    fig = ctx.figure(figsize=(10, 4.8))
    ax = fig.add_subplot()
    settings = {}
    used: list[str] = []
    if arrays:
        epochs = sorted(arrays)
        stats = np.array([[a.mean(), a.std(), *np.percentile(a, [10, 90])]
                          for a in (arrays[e] for e in epochs)])
        x = np.asarray(epochs, dtype=float)
        ax.fill_between(x, stats[:, 2], stats[:, 3], color="tab:blue", alpha=0.15,
                        label="10–90 percentile")
        ax.fill_between(x, stats[:, 0] - stats[:, 1], stats[:, 0] + stats[:, 1],
                        color="tab:blue", alpha=0.3, label="mean ± std")
        ax.plot(x, stats[:, 0], color="tab:blue", marker="o", label="mean (tau2/*.npy)")
        used += sources
        settings["percentiles"] = [10, 90]
    if m_epochs:
        if not arrays and s_epochs == m_epochs:
            mean, std = np.asarray(m_mean), np.asarray(m_std)
            ax.fill_between(m_epochs, mean - std, mean + std, color="tab:orange", alpha=0.3,
                            label="mean ± std (metrics.jsonl)")
        ax.plot(m_epochs, m_mean, color="tab:orange", linewidth=1.2,
                linestyle="-" if not arrays else "--", label="epoch mean (metrics.jsonl)")
        used.append("metrics.jsonl")
    settings.update(_tau_reference_lines(ctx, ax, vertical=False))
    ax.set_xlabel("epoch")
    ax.set_ylabel("τ2")
    ax.set_title(f"{ctx.name}: mean and spread of τ2 over training")
    ax.legend(fontsize="small", loc="center left", bbox_to_anchor=(1.01, 0.5))
    ax.grid(alpha=0.3)
    ctx.save(fig, FigureRecord(
        file="tau2_trend.png",
        title="τ2 mean and spread against epoch",
        description=("Mean per-sample τ2 per epoch with its spread (± 1 std and the 10–90 "
                     "percentile band); the paper expects the mean to rise as samples get "
                     "easier while the spread persists. Reference lines: τ1 ± ε."),
        sources=used, settings=settings))


def _metrics(ctx: _Ctx) -> tuple[list[dict[str, Any]], bool]:
    """metrics.jsonl records (cached on the context; warnings reported once)."""
    if ctx.metrics_cache is not None:
        return ctx.metrics_cache
    path = ctx.run_dir / "metrics.jsonl"
    if not path.is_file():
        result: tuple[list[dict[str, Any]], bool] = ([], False)
    else:
        records, warnings = read_metrics(path)
        for w in warnings:
            ctx.warn(w)
        result = (records, True)
    ctx.metrics_cache = result
    return result


_CURVE_PANELS: list[tuple[str, list[tuple[str, str]], str]] = [
    ("loss", [("loss", "total loss"), ("kl", "KL(q ‖ p)"), ("nll", "−log p(r|z)")], "loss"),
    ("learning rate", [("lr", "learning rate")], "learning rate"),
    ("confidence", [("confidence_mean", "mean p(r|z)")], "mean p(r|z)"),
    ("kNN during training", [("val_knn_top1", "kNN top-1")], "kNN top-1 (%)"),
]


def _fig_curves(ctx: _Ctx) -> None:
    records, exists = _metrics(ctx)
    if not exists:
        ctx.skip("training curves: no metrics.jsonl")
        return
    panels = []
    for title, keys, ylabel in _CURVE_PANELS:
        lines = [(label, *series(records, key)) for key, label in keys]
        lines = [line for line in lines if line[1]]
        if lines:
            panels.append((title, lines, ylabel))
    if not panels:
        ctx.warn("metrics.jsonl: no epoch with loss, lr, confidence_mean or val_knn_top1; "
                 "training curves not drawn")
        return
    cols = 2 if len(panels) > 1 else 1
    rows = math.ceil(len(panels) / cols)
    fig = ctx.figure(figsize=(5.2 * cols, 3.6 * rows))
    for i, (title, lines, ylabel) in enumerate(panels):
        ax = fig.add_subplot(rows, cols, i + 1)
        for label, epochs, values in lines:
            ax.plot(epochs, values, marker="." if len(epochs) < 60 else None, label=label)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.legend(fontsize="small")
        ax.grid(alpha=0.3)
    fig.suptitle(f"{ctx.name}: training curves ({ctx.config.get('method', '?')})")
    ctx.save(fig, FigureRecord(
        file="training_curves.png",
        title="Training curves",
        description=("Per-epoch values from metrics.jsonl: the loss (for VarCon also its KL "
                     "and −log p(r|z) terms), the learning rate, the mean confidence p(r|z) and "
                     "any kNN top-1 recorded during training."),
        sources=["metrics.jsonl"],
        settings={"panels": [p[0] for p in panels]}))


def _class_colours(ctx: _Ctx, count: int) -> list[Any]:
    _, _, cmaps = ctx.mpl
    if count <= 10:
        return [cmaps["tab10"](i) for i in range(count)]
    if count <= 20:
        return [cmaps["tab20"](i) for i in range(count)]
    cmap = cmaps["turbo"]
    return [cmap(i / (count - 1)) for i in range(count)]


def _load_embeddings(ctx: _Ctx, path: Path) -> tuple[np.ndarray, np.ndarray] | None:
    try:
        with np.load(path, allow_pickle=False) as data:
            if "features" not in data or "labels" not in data:
                ctx.warn(f"{ctx.rel(path)}: needs arrays 'features' and 'labels', has "
                         f"{shorten(sorted(data.files))}; t-SNE not drawn")
                return None
            features = np.asarray(data["features"], dtype=np.float32)
            labels = np.asarray(data["labels"])
    except (OSError, ValueError, EOFError) as exc:
        ctx.warn(f"{ctx.rel(path)}: unreadable ({type(exc).__name__}: {exc}); t-SNE not drawn")
        return None
    if features.ndim != 2 or labels.shape != (features.shape[0],):
        ctx.warn(f"{ctx.rel(path)}: features {features.shape} and labels {labels.shape} do not "
                 "match ([n, D] and [n]); t-SNE not drawn")
        return None
    if not np.issubdtype(labels.dtype, np.integer):
        ctx.warn(f"{ctx.rel(path)}: labels have dtype {labels.dtype}, expected integers")
        return None
    keep = np.isfinite(features).all(axis=1)
    if not keep.all():
        ctx.warn(f"{ctx.rel(path)}: {int((~keep).sum())} rows with non-finite features dropped")
        features, labels = features[keep], labels[keep]
    if features.shape[0] > MAX_EMBEDDING_POINTS:
        idx = np.random.default_rng(TSNE_SEED).choice(features.shape[0], MAX_EMBEDDING_POINTS,
                                                      replace=False)
        features, labels = features[np.sort(idx)], labels[np.sort(idx)]
    return features, labels.astype(np.int64)


def _scatter_classes(ctx: _Ctx, ax: Any, xy: np.ndarray, labels: np.ndarray,
                     names: list[str]) -> None:
    classes = np.unique(labels)
    colours = _class_colours(ctx, len(classes))
    for colour, c in zip(colours, classes, strict=True):
        mask = labels == c
        name = names[c] if 0 <= c < len(names) else str(c)
        ax.scatter(xy[mask, 0], xy[mask, 1], s=6, color=colour, label=name, alpha=0.8,
                   linewidths=0)
    if len(classes) <= MAX_LEGEND_CLASSES:
        ax.legend(title="class", fontsize="x-small", markerscale=2.5, loc="center left",
                  bbox_to_anchor=(1.01, 0.5), ncol=1 if len(classes) <= 15 else 2)
    else:
        ax.text(0.99, 0.01, f"{len(classes)} classes (legend omitted)", transform=ax.transAxes,
                ha="right", va="bottom", fontsize="small")


def _fig_embeddings(ctx: _Ctx) -> None:
    path = ctx.run_dir / "eval" / "embeddings_test.npz"
    if not path.is_file():
        ctx.skip("t-SNE/UMAP: no eval/embeddings_test.npz")
        return
    loaded = _load_embeddings(ctx, path)
    if loaded is None:
        return
    features, labels = loaded
    n = features.shape[0]
    if n < 10:
        ctx.warn(f"{ctx.rel(path)}: {n} points are too few for t-SNE (need >= 10)")
        return
    # Rows are L2-normalised so Euclidean distances rank neighbours as cosine similarity does,
    # the geometry the contrastive losses train.
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    features = features / np.maximum(norms, 1e-12)
    count = int(labels.max()) + 1 if labels.size else 0
    names = ctx.class_names(count, exact=False)
    info = ctx.eval_info("cluster") or ctx.eval_info("linear")  # cluster writes the embeddings
    info.pop("settings", None)

    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits  # a scikit-learn dependency

    perplexity = float(min(30.0, max(2.0, (n - 1) / 3)))
    tsne = TSNE(n_components=2, init="pca", random_state=TSNE_SEED, perplexity=perplexity,
                learning_rate="auto")
    # Below ~1000 points each Barnes-Hut iteration is too small to share between OpenMP threads;
    # on a busy machine the threads' waiting made 150 points take 15 s instead of 1.5 s.
    with threadpool_limits(limits=1 if n < SINGLE_THREAD_TSNE_BELOW else None):
        xy = tsne.fit_transform(features)
    fig = ctx.figure(figsize=(8.5, 6.5))
    ax = fig.add_subplot()
    _scatter_classes(ctx, ax, xy, labels, names)
    ax.set_xlabel("t-SNE 1")
    ax.set_ylabel("t-SNE 2")
    ax.set_title(f"{ctx.name}: t-SNE of {n} test embeddings, coloured by class")
    settings = {"method": "sklearn.manifold.TSNE", "init": "pca", "random_state": TSNE_SEED,
                "perplexity": round(perplexity, 2), "n_points": n,
                "dimension": int(features.shape[1]), "rows": "L2-normalised", **info}
    ctx.save(fig, FigureRecord(
        file="tsne.png", title="t-SNE of test embeddings",
        description="2-D t-SNE map of the class-balanced test subsample; one colour per class.",
        sources=[ctx.rel(path)], settings=settings))

    try:
        import umap  # optional: umap-learn
    except ImportError:
        ctx.skip("UMAP: umap-learn is not installed (pip install umap-learn); t-SNE only")
        return
    neighbours = min(15, n - 1)
    xy = umap.UMAP(n_components=2, n_neighbors=neighbours, min_dist=0.1, metric="cosine",
                   random_state=TSNE_SEED).fit_transform(features)
    fig = ctx.figure(figsize=(8.5, 6.5))
    ax = fig.add_subplot()
    _scatter_classes(ctx, ax, np.asarray(xy), labels, names)
    ax.set_xlabel("UMAP 1")
    ax.set_ylabel("UMAP 2")
    ax.set_title(f"{ctx.name}: UMAP of {n} test embeddings, coloured by class")
    ctx.save(fig, FigureRecord(
        file="umap.png", title="UMAP of test embeddings",
        description="2-D UMAP map (cosine metric) of the test subsample; one colour per class.",
        sources=[ctx.rel(path)],
        settings={"method": "umap.UMAP", "n_neighbors": neighbours, "min_dist": 0.1,
                  "metric": "cosine", "random_state": TSNE_SEED, "n_points": n, **info}))


def _load_matrix(ctx: _Ctx, path: Path, what: str, square: bool) -> np.ndarray | None:
    try:
        matrix = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        ctx.warn(f"{ctx.rel(path)}: unreadable ({type(exc).__name__}: {exc}); {what} not drawn")
        return None
    if matrix.ndim != 2 or (square and matrix.shape[0] != matrix.shape[1]) or matrix.size == 0:
        ctx.warn(f"{ctx.rel(path)}: shape {matrix.shape}, expected "
                 f"{'[C, C]' if square else '[C, D]'}; {what} not drawn")
        return None
    if not np.issubdtype(matrix.dtype, np.number) or not np.isfinite(matrix).all():
        ctx.warn(f"{ctx.rel(path)}: non-numeric or non-finite entries; {what} not drawn")
        return None
    return matrix.astype(np.float64)


def _class_axes(ax: Any, names: list[str], xlabel: str, ylabel: str) -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    count = len(names)
    if count <= MAX_TICK_LABELS:
        ax.set_xticks(range(count), names, rotation=90 if count > 10 else 45, ha="right"
                      if count <= 10 else "center", fontsize="small")
        ax.set_yticks(range(count), names, fontsize="small")
    else:  # too many names to read; the axes are class indices
        ax.tick_params(labelsize="small")


def _fig_confusion(ctx: _Ctx) -> None:
    path = ctx.run_dir / "eval" / "linear_confusion.npy"
    if not path.is_file():
        ctx.skip("confusion matrix: no eval/linear_confusion.npy (written by varcon linear)")
        return
    cm = _load_matrix(ctx, path, "confusion matrix", square=True)
    if cm is None:
        return
    totals = cm.sum(axis=1, keepdims=True)
    if (totals == 0).any():
        ctx.warn(f"{ctx.rel(path)}: {int((totals == 0).sum())} classes have no test samples "
                 "(rows of zeros)")
    normalised = np.divide(cm, totals, out=np.zeros_like(cm), where=totals > 0)
    accuracy = 100.0 * np.trace(cm) / cm.sum() if cm.sum() > 0 else float("nan")
    names = ctx.class_names(cm.shape[0])
    count = len(names)
    side = min(14.0, max(5.5, 0.35 * count + 3))
    fig = ctx.figure(figsize=(side + 1.2, side))
    ax = fig.add_subplot()
    image = ax.imshow(normalised, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    fig.colorbar(image, ax=ax, label="fraction of the true class's test samples", shrink=0.8)
    _class_axes(ax, names, "predicted class", "true class")
    if count <= 12:
        for i in range(count):
            for j in range(count):
                value = normalised[i, j]
                ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize="x-small",
                        color="white" if value > 0.5 else "black")
    ax.set_title(f"{ctx.name}: linear-probe confusion matrix (rows normalised)\n"
                 f"test top-1 = {accuracy:.2f}% over {int(cm.sum())} samples")
    ctx.save(fig, FigureRecord(
        file="linear_confusion.png", title="Linear-probe confusion matrix",
        description=("Row-normalised confusion matrix of the linear probe on the test split: "
                     "row = true class, column = predicted class; the diagonal is per-class "
                     "recall."),
        sources=[ctx.rel(path)], settings=ctx.eval_info("linear")))


def _fig_similarity(ctx: _Ctx) -> None:
    path = ctx.eval_path("centroid_similarity.npy")
    if not path.is_file():
        ctx.skip("centroid similarity: no eval/centroid_similarity.npy (written by varcon "
                 "cluster)")
        return
    sim = _load_matrix(ctx, path, "centroid similarity", square=True)
    if sim is None:
        return
    count = sim.shape[0]
    names = ctx.class_names(count)
    off = sim[~np.eye(count, dtype=bool)]
    side = min(14.0, max(5.5, 0.35 * count + 3))
    fig = ctx.figure(figsize=(side + 1.2, side))
    ax = fig.add_subplot()
    image = ax.imshow(sim, cmap="RdBu_r", vmin=-1.0, vmax=1.0, interpolation="nearest")
    fig.colorbar(image, ax=ax, label="cosine similarity of class centroids", shrink=0.8)
    _class_axes(ax, names, "class", "class")
    summary = (f"off-diagonal mean {off.mean():.3f}, max {off.max():.3f}" if off.size
               else "one class")
    ax.set_title(f"{ctx.name}: cosine similarity between class centroids\n{summary}")
    ctx.save(fig, FigureRecord(
        file="centroid_similarity.png", title="Class-centroid cosine similarity",
        description=("Cosine similarity between the L2-normalised class centroids of the test "
                     "features; high off-diagonal values mean classes collapse together."),
        sources=[ctx.rel(path)], settings=ctx.eval_info("cluster")))


def _fig_dendrogram(ctx: _Ctx) -> None:
    path = ctx.eval_path("class_centroids.npy")
    if not path.is_file():
        ctx.skip("dendrogram: no eval/class_centroids.npy (written by varcon cluster)")
        return
    centroids = _load_matrix(ctx, path, "dendrogram", square=False)
    if centroids is None:
        return
    count = centroids.shape[0]
    if count < 2:
        ctx.warn(f"{ctx.rel(path)}: {count} centroid; a dendrogram needs at least 2")
        return
    if (np.linalg.norm(centroids, axis=1) < 1e-12).any():
        ctx.warn(f"{ctx.rel(path)}: a zero centroid has no cosine distance; dendrogram not drawn")
        return
    from scipy.cluster.hierarchy import dendrogram, linkage

    tree = linkage(centroids, method="average", metric="cosine")
    names = ctx.class_names(count)
    horizontal = count > MAX_TICK_LABELS
    if horizontal:
        fig = ctx.figure(figsize=(8, max(6.0, 0.16 * count)))
    else:
        fig = ctx.figure(figsize=(max(6.0, 0.45 * count + 2), 5))
    ax = fig.add_subplot()
    dendrogram(tree, labels=names, ax=ax, orientation="left" if horizontal else "top",
               leaf_font_size=6 if horizontal else 9, leaf_rotation=0 if horizontal else 60,
               color_threshold=0, above_threshold_color="tab:blue")
    if horizontal:
        ax.set_xlabel("cosine distance (average linkage)")
        ax.set_ylabel("class")
    else:
        ax.set_ylabel("cosine distance (average linkage)")
        ax.set_xlabel("class")
    ax.set_title(f"{ctx.name}: hierarchical clustering of class centroids")
    ctx.save(fig, FigureRecord(
        file="centroid_dendrogram.png", title="Dendrogram of class centroids",
        description=("Average-linkage hierarchical clustering of the class centroids under "
                     "cosine distance (1 − cosine similarity); classes that merge low are close "
                     "in the embedding."),
        sources=[ctx.rel(path)],
        settings={"linkage": "average", "metric": "cosine",
                  "library": "scipy.cluster.hierarchy", **ctx.eval_info("cluster")}))


def _fig_robustness(ctx: _Ctx) -> None:
    env = ctx.evals.get("robustness")
    if env is None:
        ctx.skip("robustness: no eval/robustness.json (written by varcon robustness)")
        return
    results = env["results"]
    per = results.get("per_corruption")
    if not isinstance(per, dict) or not per:
        ctx.warn("eval/robustness.json: results.per_corruption is missing or empty; robustness "
                 "figure not drawn")
        return
    clean = number(results.get("clean_top1"))
    curves: dict[str, tuple[list[int], list[float]]] = {}
    for corruption, by_severity in per.items():
        if not isinstance(by_severity, dict):
            ctx.warn(f"eval/robustness.json: per_corruption.{corruption} is not an object")
            continue
        xs, ys = [], []
        if clean is not None:
            xs.append(0)
            ys.append(clean)
        for s in range(1, 6):
            value = number(by_severity.get(str(s)))
            if value is not None:
                xs.append(s)
                ys.append(value)
        if len(xs) > (clean is not None):
            curves[str(corruption)] = (xs, ys)
    if not curves:
        ctx.warn("eval/robustness.json: no severity values found; robustness figure not drawn")
        return
    _, _, cmaps = ctx.mpl
    cmap = cmaps["tab20"] if len(curves) > 10 else cmaps["tab10"]
    fig = ctx.figure(figsize=(9, 5.2))
    ax = fig.add_subplot()
    for i, (corruption, (xs, ys)) in enumerate(sorted(curves.items())):
        ax.plot(xs, ys, marker="o", markersize=3, linewidth=1.0, alpha=0.85,
                color=cmap(i % cmap.N), label=corruption.replace("_", " "))
    mean_x, mean_y = [], []
    for s in range(0, 6):
        values = [ys[xs.index(s)] for xs, ys in curves.values() if s in xs]
        if values:
            mean_x.append(s)
            mean_y.append(float(np.mean(values)))
    ax.plot(mean_x, mean_y, color="black", linewidth=2.8, marker="s",
            label="mean over corruptions")
    ax.set_xticks(range(0, 6), ["0\n(clean)", "1", "2", "3", "4", "5"])
    ax.set_xlabel("corruption severity")
    ax.set_ylabel("top-1 accuracy (%)")
    mca = number(results.get("mean_corruption_accuracy"))
    parts = [f"source: {results.get('source', '?')}"]
    if clean is not None:
        parts.append(f"clean {clean:.1f}%")
    if mca is not None:
        parts.append(f"mean corruption accuracy {mca:.1f}%")
    rel_mce = number(results.get("relative_mce"))
    if rel_mce is not None:
        parts.append(f"relative mCE {rel_mce:.1f}%")
    ax.set_title(f"{ctx.name}: accuracy under corruptions\n" + ", ".join(parts))
    ax.legend(fontsize="x-small", loc="center left", bbox_to_anchor=(1.01, 0.5),
              title="corruption")
    ax.grid(alpha=0.3)
    settings = ctx.eval_info("robustness")
    settings["source"] = results.get("source")
    ctx.save(fig, FigureRecord(
        file="robustness.png", title="Accuracy against corruption severity",
        description=("Top-1 accuracy of the linear probe on corrupted test images for each "
                     "corruption type (severity 1–5; 0 is the clean test set) and their mean."),
        sources=[ctx.rel(ctx.run_dir / "eval" / "robustness.json")], settings=settings))


_MAKERS: list[tuple[str, Callable[[_Ctx], None]]] = [
    ("tau2", _fig_tau2),
    ("training curves", _fig_curves),
    ("t-SNE/UMAP", _fig_embeddings),
    ("confusion matrix", _fig_confusion),
    ("centroid similarity", _fig_similarity),
    ("dendrogram", _fig_dendrogram),
    ("robustness", _fig_robustness),
]


def make_figures(run_dir: str | os.PathLike[str],
                 out_dir: str | os.PathLike[str] | None = None) -> FigureList:
    """Draw every figure whose input exists in ``run_dir``; return the PNG paths written.

    ``out_dir`` defaults to ``RUN_DIR/figures``. The result is a list of paths with
    ``.records`` (what each figure shows, its source files and settings), ``.skipped``
    (figures whose input is absent), ``.warnings`` (inputs present but unusable: each stops
    only its own figure) and ``.manifest`` (``figures.json``, the records as JSON).

    Raises :class:`PlotsNotInstalledError` (an ``ImportError``) without matplotlib and
    ``NotADirectoryError`` when ``run_dir`` is not a directory.
    """
    run = Path(run_dir)
    if not run.is_dir():
        raise NotADirectoryError(f"{run}: not a directory; pass a run directory written by "
                                 "`varcon pretrain`")
    mpl = _matplotlib()
    out = Path(out_dir) if out_dir is not None else run / "figures"
    out.mkdir(parents=True, exist_ok=True)
    result = FigureList()
    try:
        config = read_config(run)
    except ValueError as exc:  # figures that need no config are still drawn
        config = {}
        result.warnings.append(f"{exc}; τ1 ± ε reference lines left out")
    evals, _, problems = read_eval_files(run)
    result.warnings.extend(problems)
    ctx = _Ctx(run_dir=run, out_dir=out, config=config, evals=evals, result=result, mpl=mpl)
    for label, maker in _MAKERS:
        try:
            maker(ctx)
        except Exception as exc:  # one bad input must not stop the other figures
            result.warnings.append(f"{label}: not drawn ({type(exc).__name__}: {exc})")
    manifest = {
        "format_version": 1,
        "run_dir": str(run),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "figures": [asdict(r) for r in result.records],
        "skipped": result.skipped,
        "warnings": result.warnings,
    }
    result.manifest = out / MANIFEST_NAME
    atomic_write_text(result.manifest, json.dumps(manifest, indent=2, default=str) + "\n")
    return result


def make_cluster_figures(eval_dir: str | os.PathLike[str]) -> FigureList:
    """The class-centroid similarity matrix and dendrogram of ``varcon cluster``'s output
    folder, drawn into that folder (``centroid_similarity.png``, ``centroid_dendrogram.png``).

    Class names come from the folder's ``cluster.json``. Raises
    :class:`PlotsNotInstalledError` without matplotlib.
    """
    folder = Path(eval_dir)
    mpl = _matplotlib()
    result = FigureList()
    evals: dict[str, dict[str, Any]] = {}
    try:
        evals["cluster"] = json.loads((folder / "cluster.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        result.warnings.append(f"{folder / 'cluster.json'}: {exc}; classes shown as numbers")
    config: dict[str, Any] = {"name": evals.get("cluster", {}).get("method") or folder.name}
    ctx = _Ctx(run_dir=folder, out_dir=folder, config=config, evals=evals, result=result,
               mpl=mpl, eval_dir=folder)
    for label, maker in (("centroid similarity", _fig_similarity),
                         ("dendrogram", _fig_dendrogram)):
        try:
            maker(ctx)
        except Exception as exc:  # one bad input must not stop the other figure
            result.warnings.append(f"{label}: not drawn ({type(exc).__name__}: {exc})")
    return result


def read_manifest(figures_dir: Path) -> dict[str, Any] | None:
    """``figures.json`` of a figures directory, or None when absent or unreadable."""
    try:
        data = json.loads((Path(figures_dir) / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("figures"), list):
        return None
    return data
