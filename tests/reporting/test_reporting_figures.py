"""make_figures: every figure from a complete run, skips for absent inputs, warnings (not
crashes) for broken ones, the matplotlib-missing error, and the figures.json manifest."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from fake_runs import png_is_drawn, write_run

from varcon.reporting import FigureList, PlotsNotInstalledError, make_figures

EXPECTED = {"tau2_histograms.png", "tau2_trend.png", "training_curves.png", "tsne.png",
            "linear_confusion.png", "centroid_similarity.png", "centroid_dendrogram.png",
            "robustness.png"}
HAVE_UMAP = importlib.util.find_spec("umap") is not None


def test_complete_run_gives_every_figure(full_run_figures: tuple[Path, FigureList]) -> None:
    run, figs = full_run_figures
    expected = EXPECTED | ({"umap.png"} if HAVE_UMAP else set())
    assert {p.name for p in figs} == expected
    assert figs.warnings == []
    for path in figs:
        assert path.parent == run / "figures"
        png_is_drawn(path)
    if not HAVE_UMAP:
        assert any("UMAP" in s and "umap-learn" in s for s in figs.skipped)


def test_manifest_names_sources_and_settings(full_run_figures: tuple[Path, FigureList]) -> None:
    run, figs = full_run_figures
    manifest = json.loads((run / "figures" / "figures.json").read_text())
    records = {r["file"]: r for r in manifest["figures"]}
    assert set(records) == {p.name for p in figs}
    for record in records.values():
        assert record["title"] and record["description"]
        for source in record["sources"]:
            assert (run / source).exists(), source
    hist = records["tau2_histograms.png"]["settings"]
    assert hist["loss.temperature"] == 0.1 and hist["loss.epsilon"] == 0.02
    assert hist["epochs_shown"] == [1, 3, 6]
    assert sorted(records["tau2_histograms.png"]["sources"]) == [
        "tau2/epoch_1.npy", "tau2/epoch_3.npy", "tau2/epoch_6.npy"]
    tsne = records["tsne.png"]["settings"]
    assert (tsne["init"], tsne["random_state"], tsne["n_points"]) == ("pca", 0, 150)
    assert records["linear_confusion.png"]["settings"]["features"] == "encoder"
    assert records["centroid_dendrogram.png"]["settings"]["linkage"] == "average"


def test_only_pngs_and_manifest_are_left(full_run_figures: tuple[Path, FigureList]) -> None:
    run, figs = full_run_figures
    names = {p.name for p in (run / "figures").iterdir()}
    assert names == {p.name for p in figs} | {"figures.json"}  # no temporary files


def test_absent_inputs_are_skipped_without_warnings(tmp_path: Path) -> None:
    run = write_run(tmp_path / "sup", method="supcon", evals=(), arrays=False)
    figs = make_figures(run, tmp_path / "out")
    assert [p.name for p in figs] == ["training_curves.png"]
    assert (tmp_path / "out" / "training_curves.png").is_file()
    assert not (run / "figures").exists()  # out_dir was honoured
    assert figs.warnings == []
    skipped = " ".join(figs.skipped)
    for what in ("tau2", "embeddings_test.npz", "linear_confusion.npy",
                 "centroid_similarity.npy", "class_centroids.npy", "robustness.json"):
        assert what in skipped


def test_tau2_trend_from_metrics_when_npy_files_are_absent(tmp_path: Path) -> None:
    run = write_run(tmp_path / "r", tau2_epochs=None, evals=(), arrays=False)
    figs = make_figures(run)
    assert {p.name for p in figs} == {"tau2_trend.png", "training_curves.png"}
    record = next(r for r in figs.records if r.file == "tau2_trend.png")
    assert record.sources == ["metrics.jsonl"]
    png_is_drawn(run / "figures" / "tau2_trend.png")


def test_broken_inputs_warn_and_the_rest_is_drawn(tmp_path: Path) -> None:
    run = write_run(tmp_path / "r", evals=("robustness", "linear"), n_points=60)
    (run / "eval" / "embeddings_test.npz").unlink()  # keep the test fast: no t-SNE
    (run / "eval" / "linear_confusion.npy").write_bytes(b"not a numpy file")
    (run / "tau2" / "epoch_3.npy").write_bytes(b"\x93NUMPY garbage")
    (run / "eval" / "robustness.json").write_text("{ truncated")
    with open(run / "metrics.jsonl", "a") as fh:
        fh.write('{"epoch": 7, "loss": \n')
    np.save(run / "eval" / "centroid_similarity.npy", np.zeros((3, 4), dtype=np.float32))

    figs = make_figures(run)
    names = {p.name for p in figs}
    assert names == {"tau2_histograms.png", "tau2_trend.png", "training_curves.png",
                     "centroid_dendrogram.png"}
    text = "\n".join(figs.warnings)
    for culprit in ("linear_confusion.npy", "epoch_3.npy", "robustness.json",
                    "metrics.jsonl:8", "centroid_similarity.npy"):
        assert culprit in text, culprit
    hist = next(r for r in figs.records if r.file == "tau2_histograms.png")
    assert hist.settings["epochs_shown"] == [1, 6]
    for path in figs:
        png_is_drawn(path)
    manifest = json.loads(figs.manifest.read_text())
    assert manifest["warnings"] == figs.warnings


def test_many_classes_and_markup_in_class_names(tmp_path: Path) -> None:
    names = ["<b>"] + [f"class {i}" for i in range(1, 40)]
    run = write_run(tmp_path / "r", method="ce", evals=("linear",), class_names=names,
                    n_points=80)
    (run / "eval" / "embeddings_test.npz").unlink()
    figs = make_figures(run)
    assert {p.name for p in figs} == {"training_curves.png", "linear_confusion.png",
                                      "centroid_similarity.png", "centroid_dendrogram.png"}
    assert figs.warnings == []
    for path in figs:
        png_is_drawn(path)


def test_tsne_is_reproducible_and_needs_no_config(tmp_path: Path) -> None:
    """Only eval/embeddings_test.npz: t-SNE is drawn (fixed seed: identical bytes twice) and the
    missing config.yaml is a warning, not an error."""
    run = tmp_path / "bare"
    (run / "eval").mkdir(parents=True)
    rng = np.random.default_rng(0)
    labels = np.arange(60) % 3
    feats = rng.normal(size=(3, 8))[labels] + 0.2 * rng.normal(size=(60, 8))
    np.savez(run / "eval" / "embeddings_test.npz", features=feats.astype(np.float16),
             labels=labels.astype(np.int64))
    first = make_figures(run, tmp_path / "a")
    second = make_figures(run, tmp_path / "b")
    assert [p.name for p in first] == ["tsne.png"]
    assert any("config.yaml" in w for w in first.warnings)
    png_is_drawn(first[0])
    assert first[0].read_bytes() == second[0].read_bytes()


def test_matplotlib_missing_names_the_extra(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    run = write_run(tmp_path / "r", evals=(), arrays=False)
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, name, None)  # makes `import name` raise ImportError
    with pytest.raises(ImportError, match=r'pip install "varcon\[plots\]"') as info:
        make_figures(run)
    assert isinstance(info.value, PlotsNotInstalledError)
    assert not (run / "figures").exists()


def test_not_a_directory(tmp_path: Path) -> None:
    with pytest.raises(NotADirectoryError, match="run directory"):
        make_figures(tmp_path / "missing")
