"""`varcon cluster` draws its centroid figures into its own output folder."""

import json

import numpy as np
from PIL import Image

from varcon.reporting import make_cluster_figures


def test_cluster_figures_in_a_custom_output_folder(tmp_path):
    folder = tmp_path / "somewhere"
    folder.mkdir()
    rng = np.random.default_rng(0)
    centroids = rng.normal(size=(4, 8)).astype(np.float32)
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    np.save(folder / "class_centroids.npy", centroids)
    np.save(folder / "centroid_similarity.npy", centroids @ centroids.T)
    names = ["cat", "dog", "ship", "truck"]
    (folder / "cluster.json").write_text(json.dumps({"protocol": "cluster", "method": "varcon",
                                                     "class_names": names, "results": {}}))
    figures = make_cluster_figures(folder)
    assert sorted(p.name for p in figures) == ["centroid_dendrogram.png",
                                               "centroid_similarity.png"]
    assert not figures.warnings
    for path in figures:
        image = np.asarray(Image.open(path).convert("L"), dtype=np.float64)
        assert image.shape[0] > 200 and image.std() > 5  # drawn, not blank


def test_cluster_figures_without_inputs_warn_nothing_drawn(tmp_path):
    figures = make_cluster_figures(tmp_path)
    assert list(figures) == []
    assert any("cluster.json" in w for w in figures.warnings)
    assert len(figures.skipped) == 2
