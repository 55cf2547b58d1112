"""Bad data, bad config and bad checkpoints through the command line: exit status 2 and a
message that names the file or setting and the fix, never a traceback from deep inside
PyTorch. Runs in-process (``varcon.cli.main.main``) on tiny generated trees."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from clitools import assert_clean_error, run_cli
from datagen import write_image_folder
from varcon.cli.main import main

FAST = [
    "optim.epochs=1", "optim.warmup_epochs=0", "linear.run_after_pretrain=false",
    "train.progress=off", "train.tau2_every=0",
]
TINY = [
    "data.dataset=imagefolder", "model.encoder=small_cnn", "optim.batch_size=4",
    "data.num_workers=0", "data.augment_params={}", *FAST,
]



def pretrain_tree(capsys: pytest.CaptureFixture[str], root: Path, out: Path,
                  *extra: str) -> tuple[int, str, str]:
    return run_cli(capsys, "pretrain", "--output-dir", str(out), f"data.root={root}",
                   *TINY, *extra)



# ----------------------------------------------------------------------------- bad data


def test_missing_dataset_path(tmp_path, capsys):
    missing = tmp_path / "nowhere"
    code, _, err = pretrain_tree(capsys, missing, tmp_path / "run", "data.image_size=16")
    assert code == 2
    assert_clean_error(err, str(missing), "does not exist", "train/<class>")


def test_empty_class_folder(tmp_path, capsys):
    root = write_image_folder(tmp_path / "tree", size=(16, 16))
    (root / "train" / "d").mkdir()
    code, _, err = pretrain_tree(capsys, root, tmp_path / "run", "data.image_size=16")
    assert code == 2
    assert_clean_error(err, str(root / "train" / "d"), "no image file")


def _corrupt_tree(tmp_path: Path) -> tuple[Path, Path, Path]:
    root = write_image_folder(tmp_path / "tree", per_class=4, size=(16, 16))
    truncated = root / "train" / "a" / "0001.png"
    truncated.write_bytes(truncated.read_bytes()[:40])
    not_image = root / "train" / "b" / "0002.png"
    not_image.write_text("this is not a PNG file\n")
    return root, truncated, not_image


def test_bad_image_file_error_names_it(tmp_path, capsys):
    root, truncated, not_image = _corrupt_tree(tmp_path)
    code, _, err = pretrain_tree(capsys, root, tmp_path / "run", "data.image_size=16")
    assert code == 2
    assert_clean_error(err, str(truncated), str(not_image), "data.bad_files=skip")


def test_bad_image_file_skip_warns_with_count(tmp_path, capsys):
    root, truncated, _ = _corrupt_tree(tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        code, _out, err = pretrain_tree(capsys, root, tmp_path / "run", "data.image_size=16",
                                       "data.bad_files=skip")
    assert code == 0, err
    messages = [str(w.message) for w in caught if "unreadable" in str(w.message)]
    assert messages and "skipped 2 unreadable image file(s)" in messages[0]
    assert str(truncated) in messages[0]
    assert (tmp_path / "run" / "checkpoints" / "last.pt").is_file()


def test_batch_larger_than_dataset(tmp_path, capsys):
    root = write_image_folder(tmp_path / "tree", per_class=2, size=(16, 16))
    code, _, err = pretrain_tree(capsys, root, tmp_path / "run", "data.image_size=16",
                                 "optim.batch_size=64")
    assert code == 2
    assert_clean_error(err, "larger than the dataset", "(6 items)", "optim.batch_size")


@pytest.mark.parametrize("modes", [("L", "RGBA", "I;16", "P"), ("RGB",)])
def test_mixed_sizes_and_modes_work_with_image_size(tmp_path, capsys, modes):
    root = write_image_folder(tmp_path / "tree", per_class=4, size=[(16, 16), (20, 12)],
                              mode=list(modes))
    code, _, err = pretrain_tree(capsys, root, tmp_path / "run", "data.image_size=16")
    assert code == 0, err
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
    assert state["network"]["in_channels"] == 3 and state["network"]["image_size"] == 16
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_mixed_sizes_without_image_size_suggests_it(tmp_path, capsys):
    root = write_image_folder(tmp_path / "tree", per_class=4, size=[(16, 16), (20, 12)],
                              mode=["L", "RGBA"])
    code, _, err = pretrain_tree(capsys, root, tmp_path / "run")
    assert code == 2
    assert_clean_error(err, "differ in size", "data.image_size")


def test_mixed_modes_same_size_work_without_image_size(tmp_path, capsys):
    root = write_image_folder(tmp_path / "tree", per_class=4, size=(16, 16),
                              mode=["L", "RGBA", "I;16", "RGB"])
    code, _, err = pretrain_tree(capsys, root, tmp_path / "run")
    assert code == 0, err


# ------------------------------------------------------------------- checkpoints (linear)

DIGITS_FAST = ["optim.batch_size=64", "train.max_steps_per_epoch=3", *FAST]


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished one-epoch digits run (10 classes, 1 channel, 8x8)."""
    run = tmp_path_factory.mktemp("digits") / "run"
    assert main(["pretrain", "--output-dir", str(run), *DIGITS_FAST]) == 0
    return run


def test_evaluation_on_data_with_other_channels_is_refused(digits_run, tmp_path, capsys):
    root = write_image_folder(tmp_path / "tree", per_class=4, size=(8, 8), mode="RGB")
    code, _, err = run_cli(capsys, "knn", "--checkpoint", str(digits_run),
                           "--output-dir", str(tmp_path / "eval"),
                           "data.dataset=imagefolder", f"data.root={root}", "data.channels=3")
    assert code == 2
    assert_clean_error(err, "3 channel(s)", "trained on 1")
    assert not (tmp_path / "eval").exists()


def test_linear_with_architecture_override_is_refused(digits_run, tmp_path, capsys):
    code, _, err = run_cli(capsys, "linear", "--checkpoint", str(digits_run),
                           "--output-dir", str(tmp_path / "eval"), "model.encoder=resnet18",
                           "model.head_dim=64")
    assert code == 2
    assert_clean_error(err, "change the checkpoint's network", "encoder: checkpoint "
                       "'small_cnn' vs overrides 'resnet18'",
                       "head_dim: checkpoint 128 vs overrides 64", "drop them")


def test_linear_with_matching_overrides_runs(digits_run, tmp_path, capsys):
    code, out, err = run_cli(capsys, "linear", "--checkpoint", str(digits_run),
                             "--output-dir", str(tmp_path / "eval"), "linear.epochs=1",
                             "knn.enabled=false")
    assert code == 0, err
    assert (tmp_path / "eval" / "linear.json").is_file() and "top1" in out


def _truncated_copy(run: Path, dest: Path) -> Path:
    import shutil

    shutil.copytree(run, dest)
    last = dest / "checkpoints" / "last.pt"
    data = last.read_bytes()
    last.write_bytes(data[: len(data) // 3])
    return last


def test_truncated_checkpoint_linear_and_resume(digits_run, tmp_path, capsys):
    last = _truncated_copy(digits_run, tmp_path / "copy")
    code, _, err = run_cli(capsys, "linear", "--checkpoint", str(last))
    assert code == 2
    assert_clean_error(err, f"cannot read checkpoint {last}", "truncated")
    code, _, err = run_cli(capsys, "pretrain", "--resume", str(tmp_path / "copy"),
                           "optim.epochs=2")
    assert code == 2
    assert_clean_error(err, f"cannot read checkpoint {last}", "truncated")


def test_missing_checkpoint(tmp_path, capsys):
    code, _, err = run_cli(capsys, "linear", "--checkpoint", str(tmp_path / "none.pt"))
    assert code == 2
    assert_clean_error(err, "checkpoint not found", str(tmp_path / "none.pt"))


# ----------------------------------------------------------------------------- bad config


def test_bad_config_lists_every_problem_and_creates_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "pretrain", "--output-dir", str(out), "optim.lrr=0.1",
                           "optim.lr=-1", "loss.epsilon=0.2", "optim.epochs=3",
                           "optim.warmup_epochs=5", "optim.batch_size=many", "train.amp=fp8",
                           "data.image_size=[16]")
    assert code == 2
    assert_clean_error(err, "invalid configuration")
    expected = (
        "unknown key 'optim.lrr' (did you mean optim.lr,",
        "optim.batch_size: expected an integer, got 'many'",
        "data.image_size: expected an integer, got [16]",
        "optim.lr: must be > 0, got -1.0",
        "loss.epsilon: must satisfy 0 <= epsilon < temperature (= 0.1), got 0.2",
        "optim.warmup_epochs: must be >= 0 and shorter than training (optim.epochs = 3), got 5",
        "train.amp: must be one of auto, off, bf16, fp16; got 'fp8'",
    )
    for needle in expected:
        assert needle in err, (needle, err)
    assert err.count("\n  - ") == len(expected)  # nothing else, nothing twice
    assert not out.exists()


def test_bad_override_syntax_and_config_file(tmp_path, capsys):
    code, _, err = run_cli(capsys, "pretrain", "--output-dir", str(tmp_path / "r"), "optim.lr")
    assert code == 2
    assert_clean_error(err, "'optim.lr' is not of the form key=value")
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim: [1, 2\n")
    code, _, err = run_cli(capsys, "pretrain", "--config", str(bad))
    assert code == 2
    assert_clean_error(err, str(bad), "not valid YAML")
    code, _, err = run_cli(capsys, "pretrain", "--config", "no_such_config")
    assert code == 2
    assert_clean_error(err, "'no_such_config' not found", "shipped configs")
    assert not (tmp_path / "r").exists()


def test_resume_of_a_directory_without_a_run(tmp_path, capsys):
    code, _, err = run_cli(capsys, "pretrain", "--resume", str(tmp_path))
    assert code == 2
    assert_clean_error(err, f"no config.yaml in {tmp_path}")


# ---------------------------------------------------------------------------------- disk


def test_existing_output_dir_is_not_overwritten(digits_run, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.jsonl").write_text("precious\n")
    code, _, err = run_cli(capsys, "pretrain", "--output-dir", str(out), *DIGITS_FAST)
    assert code == 2
    assert_clean_error(err, "already holds a run", "train.overwrite=true", "--resume")
    assert [p.name for p in out.iterdir()] == ["metrics.jsonl"]
    assert (out / "metrics.jsonl").read_text() == "precious\n"
    code, _, err = run_cli(capsys, "pretrain", "--output-dir", str(out), *DIGITS_FAST,
                           "train.overwrite=true")
    assert code == 0, err
    assert (out / "checkpoints" / "last.pt").is_file()


def test_output_dir_under_a_file(tmp_path, capsys):
    parent = tmp_path / "file"
    parent.write_text("x")
    code, _, err = run_cli(capsys, "pretrain", "--output-dir", str(parent / "run"),
                           *DIGITS_FAST)
    assert code == 2
    assert_clean_error(err, str(parent / "run"))
    assert "--output-dir" in err
