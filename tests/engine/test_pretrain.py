"""End-to-end runs of the training engine on the built-in digits data (CPU, seconds)."""

import json
import shutil

import numpy as np
import pytest
import torch

from varcon.engine.pretrain import pretrain
from varcon.runtime.checkpoint import load_checkpoint
from varcon.runtime.config import ConfigError, apply_overrides, config_from_dict, read_yaml
from varcon.runtime.config import resolve_config_path as _resolve

FAST = [
    "optim.epochs=2", "optim.warmup_epochs=1", "optim.batch_size=64", "linear.epochs=2",
    "train.max_steps_per_epoch=4",
    "knn.k=5", "train.tau2_every=1", "train.progress=off",
]


def digits_config(tmp_path, *overrides, name="run"):
    data = read_yaml(_resolve("digits"))
    data["output_dir"] = str(tmp_path / name)
    return config_from_dict(apply_overrides(data, [*FAST, *overrides]))


def test_digits_run_writes_everything(tmp_path):
    cfg = digits_config(tmp_path, "train.save_every=1")
    summary = pretrain(cfg)
    run = tmp_path / "run"
    assert (run / "config.yaml").is_file()
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    for key in ("loss", "kl", "nll", "tau2_mean", "tau2_std", "confidence_mean", "lr",
                "images_per_s", "epoch_time"):
        assert all(np.isfinite(r[key]) for r in records), key
    # tau2 stays inside [tau1 - eps, tau1 + eps]; one value per view of every trained image
    tau2 = np.load(run / "tau2" / "epoch_2.npy")
    assert tau2.shape == (4 * 64 * 2,)  # 4 steps of 64 images x 2 views
    assert tau2.min() >= 0.08 - 1e-6 and tau2.max() <= 0.12 + 1e-6
    for name in ("last.pt", "epoch_1.pt", "epoch_2.pt"):
        state = torch.load(run / "checkpoints" / name, weights_only=True)
        assert state["format"] == "varcon"
    assert load_checkpoint(run)["epoch"] == 2
    assert list((run / "tensorboard").iterdir())
    record = json.loads((run / "eval" / "linear.json").read_text())
    linear = record["results"]
    assert record["settings"]["epochs"] == 2 and record["dataset"] == "digits"
    assert record["protocol"] == "linear" and record["method"] == "varcon"
    assert 0 <= linear["top1"] <= linear["top5"] <= 100
    knn = json.loads((run / "eval" / "knn.json").read_text())["results"]
    assert summary["linear_top1"] == linear["top1"] and summary["knn_top1@5"] == knn["top1"]["5"]
    cluster = json.loads((run / "eval" / "cluster.json").read_text())["results"]
    assert summary["kmeans_nmi"] == cluster["algorithms"]["kmeans"]["nmi"]
    # the probe's classifier is saved for robustness evaluation
    probe = torch.load(run / "eval" / "linear_probe.pt", weights_only=True)
    assert probe["weight"].shape == (10, 128) and probe["num_classes"] == 10
    # well above chance (10%) after 2 short epochs
    assert linear["top1"] > 40


def _weights(run_dir):
    return load_checkpoint(run_dir)["model"]


def _same(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


def test_seeded_runs_repeat_and_resume_is_exact(tmp_path):
    # eval_every: the kNN validation between epochs must not disturb training or resuming
    common = ["optim.epochs=3", "linear.run_after_pretrain=false", "train.save_every=1",
              "train.eval_every=1"]
    pretrain(digits_config(tmp_path, *common, name="a"))
    pretrain(digits_config(tmp_path, *common, name="b"))
    assert _same(_weights(tmp_path / "a"), _weights(tmp_path / "b"))

    # Resume from the end of epoch 2 and finish: identical to the uninterrupted run.
    shutil.copytree(tmp_path / "a", tmp_path / "c")
    ckpts = tmp_path / "c" / "checkpoints"
    shutil.copy(ckpts / "epoch_2.pt", ckpts / "last.pt")
    cfg = digits_config(tmp_path, *common, name="c")
    cfg.resume = str(tmp_path / "c")
    pretrain(cfg)
    assert _same(_weights(tmp_path / "a"), _weights(tmp_path / "c"))
    # epoch 3 was logged before the (simulated) crash and trained again: logged once
    records = [json.loads(x) for x in (tmp_path / "c" / "metrics.jsonl").open()]
    assert [r["epoch"] for r in records] == [1, 2, 3]
    # validation kNN (k = 5 of 1,347 training images) on the 450 test images, every epoch
    assert all(10 < r["val_knn_top1"] <= 100 for r in records)

    other = digits_config(tmp_path, *common, "seed=1", name="d")
    pretrain(other)
    assert not _same(_weights(tmp_path / "a"), _weights(tmp_path / "d"))


@pytest.mark.parametrize("method", ["supcon", "ce"])
def test_baselines_share_the_loop(tmp_path, method):
    extra = ["data.views=1"] if method == "ce" else []
    cfg = digits_config(tmp_path, f"method={method}", *extra, "knn.enabled=false")
    summary = pretrain(cfg)
    records = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert len(records) == 2 and "tau2_mean" not in json.loads(records[0])
    assert not (tmp_path / "run" / "tau2").exists()
    assert summary["linear_top1"] > 30


def test_existing_run_dir_is_not_overwritten(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text("precious\n")
    with pytest.raises(ValueError, match="already holds a run"):
        pretrain(digits_config(tmp_path))
    assert (run / "metrics.jsonl").read_text() == "precious\n"


def test_batch_larger_than_dataset_then_retry_in_place(tmp_path):
    with pytest.raises(ValueError, match="larger than the dataset"):
        pretrain(digits_config(tmp_path, "optim.batch_size=4096"))
    # the failed set-up left only config.yaml: the corrected run may use the directory
    pretrain(digits_config(tmp_path, "linear.run_after_pretrain=false"))
    assert (tmp_path / "run" / "checkpoints" / "last.pt").is_file()


def test_invalid_config_rejected_before_work(tmp_path):
    with pytest.raises(ConfigError):
        digits_config(tmp_path, "loss.epsilon=0.5")
    assert not (tmp_path / "run").exists()
