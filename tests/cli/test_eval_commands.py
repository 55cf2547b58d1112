"""The evaluation commands end to end on tiny digits runs: every command writes its result
file with the common envelope (docs/evaluation.md, "Result files") and prints a table;
earlier results are kept; bad input gets a clear error and writes nothing; ``figures`` and
``report`` work on real runs.

Three tiny runs are pre-trained once for the module (varcon, supcon, ce; one epoch of two
steps on digits without the classes 7, 8 and 9, so few-shot on novel classes can be tested).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from clitools import assert_clean_error, run_cli
from clitools import read_json as read
from datagen import write_image_folder
from varcon.cli.main import main

ENVELOPE = ("protocol", "format_version", "checkpoint", "method", "encoder", "dataset",
            "eval_dataset", "features", "class_names", "settings", "results", "seconds",
            "created")
SEEN = [str(c) for c in range(7)]  # the classes the runs were pre-trained on
TEST_COUNTS = [45, 46, 44, 46, 45, 46, 45]  # digits test images of classes 0..6
NOVEL = ["7", "8", "9"]
RUN_ARGS = [
    "optim.epochs=1", "optim.warmup_epochs=0", "optim.batch_size=64",
    "train.max_steps_per_epoch=2", "train.progress=off", "train.tau2_every=1",
    "data.exclude_classes=[7,8,9]", "data.per_class=20", "linear.epochs=2",
    "knn.k=[3,5]", "cluster.algorithms=[kmeans,agglomerative_ward]",
]
FEWSHOT = ["fewshot.n_way=3", "fewshot.shots=[1]", "fewshot.n_query=5", "fewshot.episodes=20",
           "fewshot.classifiers=[ncm]"]





@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``{"varcon": RUN_DIR, "supcon": ..., "ce": ...}``; only the varcon run is evaluated
    at the end of pre-training (kNN, clustering, linear probe)."""
    base = tmp_path_factory.mktemp("eval_runs")
    out: dict[str, Path] = {}
    for method in ("varcon", "supcon", "ce"):
        run = base / method
        extra = [] if method == "varcon" else ["linear.run_after_pretrain=false"]
        assert main(["pretrain", "--output-dir", str(run), f"method={method}", *RUN_ARGS,
                     *extra]) == 0
        out[method] = run
    return out


@pytest.fixture(scope="module")
def run(runs: dict[str, Path]) -> Path:
    return runs["varcon"]


def assert_envelope(record: dict, protocol: str, run: Path, eval_dataset: str,
                    class_names: list[str]) -> None:
    assert set(ENVELOPE) <= set(record), sorted(set(ENVELOPE) - set(record))
    assert record["protocol"] == protocol and record["format_version"] == 1
    assert record["checkpoint"] == str(run / "checkpoints" / "last.pt")
    assert record["method"] == "varcon" and record["encoder"] == "small_cnn"
    assert record["dataset"] == "digits-subset"  # what the encoder was trained on
    assert record["eval_dataset"] == eval_dataset
    assert record["features"] in ("encoder", "head")
    assert record["class_names"] == class_names
    assert isinstance(record["settings"], dict) and isinstance(record["results"], dict)
    assert record["seconds"] >= 0 and len(record["created"]) == 19


# ------------------------------------------------------------------- pre-training's own end


def test_pretrain_end_writes_linear_knn_cluster_and_their_arrays(run):
    eval_dir = run / "eval"
    linear = read(eval_dir / "linear.json")
    assert_envelope(linear, "linear", run, "digits-subset", SEEN)
    assert linear["settings"]["epochs"] == 2 and linear["settings"]["augment"] == "eval"
    res = linear["results"]
    assert res["n_test"] == sum(TEST_COUNTS) and 0 <= res["top1"] <= res["top5"] <= 100

    # The confusion matrix is the probe's test predictions: its trace gives top-1.
    confusion = np.load(eval_dir / "linear_confusion.npy")
    assert confusion.dtype == np.int64 and confusion.shape == (7, 7)
    assert confusion.sum() == res["n_test"]
    assert confusion.sum(axis=1).tolist() == TEST_COUNTS  # rows are the true classes
    assert 100.0 * np.trace(confusion) / res["n_test"] == pytest.approx(res["top1"])

    probe = torch.load(eval_dir / "linear_probe.pt", weights_only=True)
    assert probe["weight"].shape == (7, 128) and probe["bias"].shape == (7,)
    assert probe["class_names"] == SEEN

    knn = read(eval_dir / "knn.json")
    assert_envelope(knn, "knn", run, "digits-subset", SEEN)
    assert knn["settings"]["k"] == [3, 5] and knn["settings"]["n_train"] == 7 * 20
    for k in ("3", "5"):
        assert 0 <= knn["results"]["top1"][k] <= knn["results"]["top5"][k] <= 100

    cluster = read(eval_dir / "cluster.json")
    assert_envelope(cluster, "cluster", run, "digits-subset", SEEN)
    assert set(cluster["results"]["algorithms"]) == {"kmeans", "agglomerative_ward"}
    assert cluster["results"]["num_clusters"] == 7
    sim = np.load(eval_dir / "centroid_similarity.npy")
    assert sim.dtype == np.float32 and sim.shape == (7, 7)
    np.testing.assert_allclose(np.diag(sim), 1.0, atol=1e-5)
    np.testing.assert_allclose(sim, sim.T, atol=1e-6)
    off = sim[~np.eye(7, dtype=bool)]
    assert cluster["results"]["centroid_similarity_offdiag_max"] == pytest.approx(off.max(),
                                                                                 abs=1e-5)
    centroids = np.load(eval_dir / "class_centroids.npy")
    np.testing.assert_allclose(np.linalg.norm(centroids, axis=1), 1.0, atol=1e-5)
    with np.load(eval_dir / "embeddings_test.npz") as npz:
        assert npz["features"].dtype == np.float16 and npz["labels"].dtype == np.int64
        assert npz["features"].shape == (sum(TEST_COUNTS), 128)
        assert sorted(np.unique(npz["labels"]).tolist()) == list(range(7))


# --------------------------------------------------------------------------- each command


@pytest.mark.parametrize(
    ("command", "extra", "table_key"),
    [("knn", ["knn.k=[2,4]"], "top1.2"), ("cluster", ["cluster.algorithms=[agglomerative_ward]"],
                                 "algorithms.agglomerative_ward.nmi"),
     ("fewshot", FEWSHOT, "tasks n_way=3 k_shot=1 classifier=ncm"),
     ("linear", ["linear.epochs=1"], "n_test")],
)
def test_command_writes_envelope_and_prints_table(run, tmp_path, capsys, command, extra,
                                                  table_key):
    out_dir = tmp_path / "out"
    code, out, err = run_cli(capsys, command, "--checkpoint", run, "--output-dir", out_dir,
                             "train.progress=off", *extra)
    assert code == 0, err
    record = read(out_dir / f"{command}.json")
    assert_envelope(record, command, run, "digits-subset", SEEN)
    assert f"{command} (digits-subset)" in out and table_key in out
    assert "written to" in out and str(out_dir) in out
    assert not (run / "eval" / f"{command}-").exists()
    results = record["results"]
    if command == "knn":
        assert set(results["top1"]) == {"2", "4"} and record["settings"]["k"] == [2, 4]
    elif command == "fewshot":
        (task,) = results["tasks"]
        assert (task["n_way"], task["k_shot"], task["n_query"], task["episodes"],
                task["classifier"]) == (3, 1, 5, 20, "ncm")
        assert 100 / 3 - 20 < task["mean"] <= 100 and task["ci95"] >= 0
    elif command == "linear":
        assert (out_dir / "linear_probe.pt").is_file()
        assert (out_dir / "linear_confusion.npy").is_file()


def test_rerun_keeps_the_earlier_result(run, tmp_path, capsys):
    out_dir = tmp_path / "out"
    assert run_cli(capsys, "knn", "--checkpoint", run, "--output-dir", out_dir, "knn.k=3")[0] == 0
    first = read(out_dir / "knn.json")
    assert run_cli(capsys, "knn", "--checkpoint", run, "--output-dir", out_dir, "knn.k=4")[0] == 0
    assert read(out_dir / "knn.json")["settings"]["k"] == [4]
    kept = sorted(out_dir.glob("knn-*.json"))
    assert len(kept) == 1 and read(kept[0]) == first
    # A third run in the same second gets its own name: nothing is lost.
    assert run_cli(capsys, "knn", "--checkpoint", run, "--output-dir", out_dir, "knn.k=5")[0] == 0
    kept = sorted(out_dir.glob("knn-*.json"))
    assert len(kept) == 2
    assert sorted(read(p)["settings"]["k"][0] for p in kept) == [3, 4]
    assert not list(out_dir.glob(".*tmp*"))  # no temporary file left behind


def test_default_output_dir_is_the_runs_eval(run, capsys):
    before = read(run / "eval" / "knn.json")
    code, out, err = run_cli(capsys, "knn", "--checkpoint", run / "checkpoints" / "last.pt",
                             "knn.k=[7]", "train.progress=off")
    assert code == 0, err
    assert str(run / "eval") in out
    assert read(run / "eval" / "knn.json")["settings"]["k"] == [7]
    kept = [read(p) for p in (run / "eval").glob("knn-*.json")]
    assert before in kept


# ------------------------------------------------------------------------------ transfer


def test_transfer_from_digits_to_a_grayscale_tree(run, tmp_path, capsys):
    """A 1-channel 8x8 tree with classes of its own: the probe is trained for those."""
    root = write_image_folder(tmp_path / "shapes", classes=("p", "q", "r", "s"), per_class=5,
                              size=(8, 8), mode="L")
    out_dir = tmp_path / "out"
    code, out, err = run_cli(capsys, "transfer", "--checkpoint", run, "--output-dir", out_dir,
                             "data.dataset=imagefolder", f"data.root={root}",
                             "data.exclude_classes=null", "data.per_class=null",
                             "linear.epochs=3", "train.progress=off")
    assert code == 0, err
    record = read(out_dir / "transfer_shapes.json")
    assert record["protocol"] == "transfer"
    assert record["dataset"] == "digits-subset" and record["eval_dataset"] == "shapes"
    assert record["class_names"] == ["p", "q", "r", "s"]
    res = record["results"]
    assert res["source_dataset"] == "digits-subset" and res["target_dataset"] == "shapes"
    assert res["num_classes"] == 4 and res["n_test"] == 20
    assert 0 <= res["top1"] <= res["top5"] == 100.0  # top-5 of 4 classes
    assert record["settings"]["source_dataset"] == "digits-subset"
    assert record["settings"]["target_root"] == str(root)
    assert "transfer (shapes)" in out and "target_dataset" in out
    # The transfer probe does not replace the source data's probe.
    assert not (out_dir / "linear.json").exists()
    assert (out_dir / "transfer_shapes_probe.pt").is_file()


@pytest.mark.parametrize("command", ["knn", "transfer"])
def test_data_with_other_channels_is_refused(run, tmp_path, capsys, command):
    root = write_image_folder(tmp_path / "rgb", per_class=2, size=(8, 8), mode="RGB")
    out_dir = tmp_path / "out"
    code, _, err = run_cli(capsys, command, "--checkpoint", run, "--output-dir", out_dir,
                           "data.dataset=imagefolder", f"data.root={root}",
                           "data.exclude_classes=null", "data.channels=3")
    assert code == 2
    assert_clean_error(err, "3 channel(s)", "trained on 1", "same number of channels",
                       "data.channels")
    assert not out_dir.exists()


def test_colour_tree_is_read_as_grayscale_by_a_grayscale_encoder(run, tmp_path, capsys):
    """Without data.channels a tree decodes to the encoder's channels (here digits' 1), as
    ``encoder.transform`` and ``varcon embed`` convert them."""
    root = write_image_folder(tmp_path / "rgb", classes=("p", "q"), per_class=4, size=(8, 8),
                              mode="RGB")
    out_dir = tmp_path / "out"
    code, _, err = run_cli(capsys, "knn", "--checkpoint", run, "--output-dir", out_dir,
                           "data.dataset=imagefolder", f"data.root={root}",
                           "data.exclude_classes=null", "data.per_class=null", "knn.k=[3]",
                           "train.progress=off")
    assert code == 0, err
    record = read(out_dir / "knn.json")
    assert record["class_names"] == ["p", "q"] and 0 <= record["results"]["top1"]["3"] <= 100


# ------------------------------------------------------------------------------- few-shot


def test_fewshot_more_ways_than_classes(run, tmp_path, capsys):
    out_dir = tmp_path / "out"
    code, _, err = run_cli(capsys, "fewshot", "--checkpoint", run, "--output-dir", out_dir,
                           *FEWSHOT, "fewshot.n_way=8")
    assert code == 2
    assert_clean_error(err, "8-way", "7")
    assert not (out_dir / "fewshot.json").exists()


def test_fewshot_on_classes_excluded_at_pretraining_says_lift_it(run, tmp_path, capsys):
    out_dir = tmp_path / "out"
    code, _, err = run_cli(capsys, "fewshot", "--checkpoint", run, "--output-dir", out_dir,
                           *FEWSHOT, "fewshot.classes=[7,8,9]")
    assert code == 2
    assert_clean_error(err, "fewshot.classes", "data.exclude_classes=null")
    assert not (out_dir / "fewshot.json").exists()


def test_fewshot_on_novel_classes(run, tmp_path, capsys, monkeypatch):
    """Pre-trained without 7, 8, 9; evaluated on episodes drawn from exactly those."""
    import varcon.evaluation.protocols as protocols

    seen_labels: list[np.ndarray] = []
    real = protocols.fewshot_evaluate

    def spy(feats, labels, **kwargs):
        seen_labels.append(np.asarray(labels)[np.isin(np.asarray(labels), kwargs["classes"])])
        return real(feats, labels, **kwargs)

    monkeypatch.setattr(protocols, "fewshot_evaluate", spy)
    out_dir = tmp_path / "out"
    code, _, err = run_cli(capsys, "fewshot", "--checkpoint", run, "--output-dir", out_dir,
                           *FEWSHOT, "data.exclude_classes=null", "fewshot.classes=[7,8,9]")
    assert code == 0, err
    record = read(out_dir / "fewshot.json")
    assert record["settings"]["classes"] == NOVEL
    assert record["class_names"] == [str(c) for c in range(10)]
    assert record["dataset"] == "digits-subset" and record["eval_dataset"] == "digits"
    (task,) = record["results"]["tasks"]
    assert task["n_way"] == 3 and task["episodes"] == 20
    (labels,) = seen_labels
    assert sorted(np.unique(labels).tolist()) == [7, 8, 9]


# ------------------------------------------------------------------------------ bad input


def test_not_a_varcon_checkpoint(tmp_path, capsys):
    path = tmp_path / "other.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, path)
    out_dir = tmp_path / "out"
    code, _, err = run_cli(capsys, "knn", "--checkpoint", path, "--output-dir", out_dir)
    assert code == 2
    assert_clean_error(err, str(path), "not a varcon checkpoint")
    assert not out_dir.exists()


def test_unknown_override_is_refused_before_any_work(run, tmp_path, capsys):
    out_dir = tmp_path / "out"
    code, _, err = run_cli(capsys, "knn", "--checkpoint", run, "--output-dir", out_dir,
                           "knn.kk=3")
    assert code == 2
    assert_clean_error(err, "unknown key 'knn.kk'", "knn.k")
    assert not out_dir.exists()


# ----------------------------------------------------------------------- figures, report


def assert_png(path: Path, min_bytes: int = 5_000) -> None:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.width >= 200 and im.height >= 150, (path, im.size)
    assert path.stat().st_size >= min_bytes, path


def test_figures_of_a_real_run(run, tmp_path, capsys):
    out_dir = tmp_path / "figures"
    code, out, err = run_cli(capsys, "figures", run, "--output-dir", out_dir)
    assert code == 0, err
    pngs = sorted(out_dir.glob("*.png"))
    listed = {Path(line) for line in out.splitlines() if line.endswith(".png")}
    assert listed == set(pngs) and len(pngs) >= 5, (out, err)
    for png in pngs:
        assert_png(png)
    names = " ".join(p.name for p in pngs)
    for part in ("tau2", "confusion", "tsne"):
        assert part in names, names


def test_report_of_varcon_supcon_and_ce(runs, tmp_path, capsys):
    out_dir = tmp_path / "report"
    not_a_run = tmp_path / "notes"
    not_a_run.mkdir()
    code, out, err = run_cli(capsys, "report", runs["varcon"], runs["supcon"], not_a_run,
                             runs["ce"], "--output", out_dir, "--figures", "none")
    assert code == 1  # one directory was not a run: named, the others still reported
    assert "error:" in err and str(not_a_run) in err
    md = (out_dir / "report.md").read_text(encoding="utf-8")
    html = (out_dir / "report.html").read_text(encoding="utf-8")
    for text in (md, html):
        for method in ("varcon", "supcon", "ce"):
            assert f"| {method} |" in text or f"<td>{method}</td>" in text, method
    assert "not run" in md and "varcon linear --checkpoint" in md  # supcon/ce lack eval
    top1 = read(runs["varcon"] / "eval" / "linear.json")["results"]["top1"]
    assert f"{top1:.2f}" in md  # the varcon run's probe accuracy is in the table
    assert str(out_dir / "report.md") in out

    code, _, err = run_cli(capsys, "report", *runs.values(), "--output", tmp_path / "ok",
                           "--figures", "none")
    assert code == 0, err


def test_report_with_curves_only_and_linked_images(runs, tmp_path, capsys):
    out_dir = tmp_path / "linked"
    code, _, err = run_cli(capsys, "report", *runs.values(), "--output", out_dir,
                           "--figures", "curves", "--html-images", "link")
    assert code == 0, err
    html = (out_dir / "report.html").read_text(encoding="utf-8")
    assert "data:image/png" not in html and '<img src="figures/group_curves.png"' in html
    assert_png(out_dir / "figures" / "group_curves.png")
    assert sorted(p.name for p in (out_dir / "figures").iterdir()) == [
        "group_curves.png", "headline.png"]  # no run's own figures
