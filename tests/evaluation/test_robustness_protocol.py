"""``varcon robustness`` (and ``transfer`` between 3-channel datasets) on a tiny CIFAR-10-format
run: the published CIFAR-10-C layout is read image for image and label for label, corruptions
are generated when no benchmark is given, mCE / relative mCE follow Hendrycks & Dietterich
(2019), and bad input (no probe, unknown corruption, wrong layout, baseline without results)
gets a clear error that names the fix and writes nothing.

One run is pre-trained for the module: small_cnn on 50 generated CIFAR-10 images, one step,
with the linear probe (saved as eval/linear_probe.pt) trained at its end.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from clitools import assert_clean_error, run_cli
from clitools import read_json as read
from datagen import write_cifar_python, write_image_folder
from varcon.cli.main import main
from varcon.data import build_dataset
from varcon.evaluation.corruptions import CORRUPTIONS, EXTRA_CORRUPTIONS
from varcon.evaluation.linear import load_probe
from varcon.evaluation.robustness import corruption_errors, read_baseline
from varcon.runtime.checkpoint import load_checkpoint, load_encoder

N_TEST = 20
RUN_ARGS = [
    "data.dataset=cifar10", "model.encoder=small_cnn", "optim.batch_size=16",
    "optim.epochs=1", "optim.warmup_epochs=0", "train.max_steps_per_epoch=1",
    "train.progress=off", "train.tau2_every=0", "data.num_workers=0", "knn.enabled=false",
    "cluster.enabled=false", "linear.epochs=2", "linear.augment=eval", "linear.batch_size=16",
]
COMMON = ["train.progress=off", "data.num_workers=0"]





@pytest.fixture(scope="module")
def cifar(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """``(run_dir, cifar_root)``."""
    base = tmp_path_factory.mktemp("robust")
    root = base / "cifar"
    write_cifar_python(root, n_train=50, n_test=N_TEST)
    run = base / "run"
    assert main(["pretrain", "--output-dir", str(run), f"data.root={root}", *RUN_ARGS]) == 0
    assert (run / "eval" / "linear_probe.pt").is_file()
    return run, root


def out_with_probe(run: Path, out: Path) -> Path:
    """A fresh output folder holding the run's probe (robustness reads it from there)."""
    out.mkdir(parents=True)
    shutil.copy(run / "eval" / "linear_probe.pt", out / "linear_probe.pt")
    return out


def test_cifar_run_and_its_probe(cifar):
    run, _ = cifar
    probe, state = load_probe(run / "eval" / "linear_probe.pt")
    assert probe.weight.shape == (10, 128) and state["num_classes"] == 10
    assert state["class_names"][:2] == ["airplane", "automobile"]
    assert not probe.training
    with pytest.raises(ValueError, match="not a linear probe saved by `varcon linear`"):
        load_probe(run / "checkpoints" / "last.pt")


# ----------------------------------------------------------------------------- bad input


def test_without_a_probe_names_varcon_linear(cifar, tmp_path, capsys):
    run, _ = cifar
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, "robustness", "--checkpoint", run, "--output-dir", out,
                           *COMMON, "robustness.corruptions=[contrast]")
    assert code == 2
    assert_clean_error(err, "no linear probe", "varcon linear --checkpoint", "first")
    assert not (out / "robustness.json").exists()


@pytest.mark.parametrize("root", [False, True])
def test_unknown_corruption_lists_the_valid_ones(cifar, tmp_path, capsys, root):
    run, _ = cifar
    out = out_with_probe(run, tmp_path / "out")
    extra = []
    valid = list(CORRUPTIONS) + list(EXTRA_CORRUPTIONS)
    if root:  # with a benchmark folder the valid names are the corruptions it holds
        bench = tmp_path / "bench"
        bench.mkdir()
        np.save(bench / "labels.npy", np.zeros(N_TEST, np.int64))
        np.save(bench / "fog.npy", np.zeros((5 * N_TEST, 32, 32, 3), np.uint8))
        extra = [f"robustness.root={bench}"]
        valid = ["fog"]
    code, _, err = run_cli(capsys, "robustness", "--checkpoint", run, "--output-dir", out,
                           *COMMON, *extra, "robustness.corruptions=[gausian_noise]")
    assert code == 2
    assert_clean_error(err, "gausian_noise", "valid: " + ", ".join(valid))
    assert not (out / "robustness.json").exists()


def test_benchmark_folder_in_the_wrong_layout_names_the_missing_file(cifar, tmp_path, capsys):
    run, _ = cifar
    out = out_with_probe(run, tmp_path / "out")
    bench = tmp_path / "bench"
    bench.mkdir()
    np.save(bench / "fog.npy", np.zeros((5 * N_TEST, 32, 32, 3), np.uint8))  # no labels.npy
    code, _, err = run_cli(capsys, "robustness", "--checkpoint", run, "--output-dir", out,
                           *COMMON, f"robustness.root={bench}")
    assert code == 2
    assert_clean_error(err, "no labels.npy", str(bench))
    assert not (out / "robustness.json").exists()


def test_baseline_without_robustness_results(cifar, tmp_path, capsys):
    run, _ = cifar
    out = out_with_probe(run, tmp_path / "out")
    other = tmp_path / "other_run"
    (other / "eval").mkdir(parents=True)
    code, _, err = run_cli(capsys, "robustness", "--checkpoint", run, "--output-dir", out,
                           "--baseline", other, *COMMON, "robustness.corruptions=[contrast]")
    assert code == 2
    assert_clean_error(err, f"--baseline {other}", "no eval/robustness.json",
                       f"varcon robustness --checkpoint {other}")
    assert not (out / "robustness.json").exists()


# --------------------------------------------------------------- the published CIFAR-10-C


def _predictions(run: Path, images_hwc: np.ndarray) -> np.ndarray:
    """The run's encoder + probe on uint8 [N, H, W, 3] images, normalised as in training."""
    spec = load_checkpoint(run)["network"]
    encoder = load_encoder(run)
    probe, _ = load_probe(run / "eval" / "linear_probe.pt")
    x = torch.from_numpy(images_hwc).permute(0, 3, 1, 2).float() / 255
    mean = torch.tensor(spec["mean"])[:, None, None]
    std = torch.tensor(spec["std"])[:, None, None]
    with torch.no_grad():
        return probe(encoder((x - mean) / std)).argmax(1).numpy()


def write_cifar_c(folder: Path, images: np.ndarray, labels: np.ndarray,
                  names: list[str]) -> list[np.ndarray]:
    """``<name>.npy`` uint8 [5 N, 32, 32, 3] and ``labels.npy`` [5 N]: severity s holds the
    images in the order perms[s - 1]. Returns the permutations."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    perms = [rng.permutation(len(images)) for _ in range(5)]
    stacked = np.concatenate([images[p] for p in perms])
    for name in names:
        np.save(folder / f"{name}.npy", stacked)
    np.save(folder / "labels.npy", np.concatenate([labels[p] for p in perms]).astype(np.int64))
    return perms


def test_reads_the_cifar10c_layout(cifar, tmp_path, capsys):
    """Severity 1 holds the clean test images with their labels (accuracy = clean accuracy);
    severity 5 holds them labelled with the probe's own predictions (accuracy = 100): each
    severity's images and labels are read from their own block of the files, paired."""
    run, root = cifar
    test = build_dataset("cifar10", str(root), "test")
    images = np.stack([np.asarray(test[i][0].permute(1, 2, 0)) for i in range(len(test))])
    truth = np.array([test[i][1] for i in range(len(test))])
    predicted = _predictions(run, images)
    bench = tmp_path / "CIFAR-10-C"
    perms = write_cifar_c(bench, images, truth, ["gaussian_noise", "fog"])
    labels = np.load(bench / "labels.npy")
    labels[4 * N_TEST:] = predicted[perms[4]]  # severity 5: the probe is always right
    np.save(bench / "labels.npy", labels)

    out = out_with_probe(run, tmp_path / "out")
    code, out_text, err = run_cli(capsys, "robustness", "--checkpoint", run, "--output-dir",
                                  out, *COMMON, f"robustness.root={bench}",
                                  "robustness.severities=[1,5]")
    assert code == 0, err
    record = read(out / "robustness.json")
    assert record["protocol"] == "robustness" and record["eval_dataset"] == "cifar10"
    res = record["results"]
    assert res["source"] == "cifar-c"
    assert record["settings"]["corruptions"] == ["gaussian_noise", "fog"]  # all it holds
    clean = 100.0 * float(np.mean(predicted == truth))
    assert clean < 100.0  # (a one-step encoder): severities 1 and 5 must differ
    assert res["clean_top1"] == pytest.approx(clean)
    for name in ("gaussian_noise", "fog"):
        by_sev = res["per_corruption"][name]
        assert set(by_sev) == {"1", "5", "mean"}
        assert by_sev["1"] == pytest.approx(clean)
        assert by_sev["5"] == pytest.approx(100.0)
        assert by_sev["mean"] == pytest.approx((clean + 100.0) / 2)
    assert res["mean_corruption_accuracy"] == pytest.approx((clean + 100.0) / 2)
    assert res["mce"] is None and res["relative_mce"] is None and res["baseline"] is None
    assert "clean_top1" in out_text and "mean_corruption_accuracy" in out_text

    # Against itself as the baseline: every corruption error equals the baseline's.
    again = tmp_path / "again"
    out_with_probe(run, again)
    code, _, err = run_cli(capsys, "robustness", "--checkpoint", run, "--output-dir", again,
                           "--baseline", out / "robustness.json", *COMMON,
                           f"robustness.root={bench}", "robustness.severities=[1,5]")
    assert code == 0, err
    res = read(again / "robustness.json")["results"]
    assert res["mce"] == pytest.approx(100.0)
    assert res["baseline"] == str(out / "robustness.json")
    # Relative CE: sum_s (E_s - E_clean) = 0 + (0 - (100 - clean)), non-zero, equal for both.
    assert res["relative_mce"] == pytest.approx(100.0)


# ------------------------------------------------------------------------ generated ones


def test_generated_corruptions_of_the_test_split(cifar, tmp_path, capsys):
    pytest.importorskip("imagecorruptions", reason="needs varcon[robustness]")
    run, _ = cifar
    out = out_with_probe(run, tmp_path / "out")
    code, _, err = run_cli(capsys, "robustness", "--checkpoint", run, "--output-dir", out,
                           *COMMON, "robustness.corruptions=[gaussian_noise,contrast]",
                           "robustness.severities=[1,5]", "robustness.max_images=10")
    assert code == 0, err
    record = read(out / "robustness.json")
    res, settings = record["results"], record["settings"]
    assert res["source"] == "generated"
    assert settings["n_images"] == 10 and settings["max_images"] == 10
    assert settings["corruptions"] == ["gaussian_noise", "contrast"]
    assert settings["severities"] == [1, 5]
    for name in ("gaussian_noise", "contrast"):
        by_sev = res["per_corruption"][name]
        for s in ("1", "5"):
            assert 0 <= by_sev[s] <= 100 and (by_sev[s] / 10).is_integer()  # k of 10 images
        assert by_sev["mean"] == pytest.approx((by_sev["1"] + by_sev["5"]) / 2)
    assert res["mean_corruption_accuracy"] == pytest.approx(
        np.mean([res["per_corruption"][n]["mean"] for n in ("gaussian_noise", "contrast")]))


# --------------------------------------------------------------------------- mCE by hand


def _result(clean: float, per: dict[str, dict[str, float]]) -> dict:
    return {"clean_top1": clean, "per_corruption": {
        name: {**by_sev, "mean": float(np.mean(list(by_sev.values())))}
        for name, by_sev in per.items()}}


def test_corruption_errors_by_hand():
    """Hendrycks & Dietterich (2019): CE_c = sum_s E_cs / sum_s E^base_cs, relative
    CE_c = sum_s (E_cs - E_clean) / sum_s (E^base_cs - E^base_clean), means over c, in %."""
    run = _result(90.0, {"fog": {"1": 80.0, "5": 60.0}, "contrast": {"1": 70.0, "5": 50.0},
                         "snow": {"1": 10.0}})  # snow: not in the baseline, left out
    base = _result(80.0, {"fog": {"1": 60.0, "5": 40.0}, "contrast": {"1": 50.0, "5": 30.0,
                                                                      "3": 5.0}})
    # errors: run fog 20, 40 (clean 10); contrast 30, 50. base fog 40, 60 (clean 20);
    # contrast 50, 70 (severity 3 only in the baseline: ignored).
    ce_fog, ce_contrast = (20 + 40) / (40 + 60), (30 + 50) / (50 + 70)
    rel_fog = ((20 - 10) + (40 - 10)) / ((40 - 20) + (60 - 20))
    rel_contrast = ((30 - 10) + (50 - 10)) / ((50 - 20) + (70 - 20))
    scores = corruption_errors(run, base)
    assert scores["mce"] == pytest.approx(100 * (ce_fog + ce_contrast) / 2)
    assert scores["relative_mce"] == pytest.approx(100 * (rel_fog + rel_contrast) / 2)
    # against itself: 100 %
    same = corruption_errors(base, base)
    assert same["mce"] == pytest.approx(100.0) and same["relative_mce"] == pytest.approx(100.0)


def test_corruption_errors_edge_cases():
    run = _result(90.0, {"fog": {"1": 90.0}})
    base = _result(80.0, {"fog": {"1": 80.0}})  # no degradation: relative CE undefined
    scores = corruption_errors(run, base)
    assert scores["mce"] == pytest.approx(100 * 10 / 20) and scores["relative_mce"] is None
    with pytest.raises(ValueError, match="shares no corruption"):
        corruption_errors(run, _result(80.0, {"contrast": {"1": 50.0}}))


def test_read_baseline_accepts_run_dir_eval_dir_and_file(tmp_path):
    record = {"protocol": "robustness", "results": {"clean_top1": 50.0, "per_corruption": {}}}
    (tmp_path / "run" / "eval").mkdir(parents=True)
    path = tmp_path / "run" / "eval" / "robustness.json"
    path.write_text(json.dumps(record))
    for where in (tmp_path / "run", tmp_path / "run" / "eval", path):
        assert read_baseline(where) == record["results"]
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not a robustness result"):
        read_baseline(tmp_path / "run")


# ------------------------------------------------------------------------------ transfer


def test_transfer_from_cifar_to_an_image_folder(cifar, tmp_path, capsys):
    run, _ = cifar
    tree = write_image_folder(tmp_path / "shapes", classes=("p", "q", "r", "s"), per_class=5,
                              size=(32, 32))
    out = tmp_path / "out"
    code, out_text, err = run_cli(capsys, "transfer", "--checkpoint", run, "--output-dir", out,
                                  *COMMON, "data.dataset=imagefolder", f"data.root={tree}",
                                  "linear.epochs=3")
    assert code == 0, err
    record = read(out / "transfer_shapes.json")
    assert record["protocol"] == "transfer"
    assert record["dataset"] == "cifar10" and record["eval_dataset"] == "shapes"
    assert record["class_names"] == ["p", "q", "r", "s"]
    res = record["results"]
    assert (res["source_dataset"], res["target_dataset"], res["num_classes"]) == \
        ("cifar10", "shapes", 4)
    assert res["n_test"] == 20 and 0 <= res["top1"] <= res["top5"] == 100.0  # 4 classes
    assert record["settings"]["target_root"] == str(tree)
    assert "transfer (shapes)" in out_text
    probe, state = load_probe(out / "transfer_shapes_probe.pt")
    assert probe.weight.shape == (4, 128) and state["class_names"] == ["p", "q", "r", "s"]
    assert not (out / "linear.json").exists()  # the source data's probe is not replaced
