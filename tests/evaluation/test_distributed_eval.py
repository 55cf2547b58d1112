"""Evaluation commands under torchrun (2 CPU processes, gloo): each rank encodes a strided
shard, the shards are gathered back into dataset order, and the figures match one process."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from varcon.cli.main import main

pytestmark = pytest.mark.slow

TINY = ["optim.epochs=1", "optim.warmup_epochs=0", "optim.batch_size=64",
        "train.max_steps_per_epoch=2", "linear.run_after_pretrain=false",
        "train.progress=off", "train.tau2_every=0"]
EVAL = ["knn.k=[5,50]", "eval.cache_features=true", "linear.epochs=2", "train.progress=off"]


def test_knn_and_linear_under_torchrun_match_one_process(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["pretrain", "--output-dir", str(run), *TINY]) == 0
    one = tmp_path / "one"
    for command in ("knn", "linear"):
        assert main([command, "--checkpoint", str(run), "--output-dir", str(one), *EVAL]) == 0
    capsys.readouterr()

    two = tmp_path / "two"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for command in ("knn", "linear"):
        proc = subprocess.run(
            [sys.executable, "-m", "torch.distributed.run", "--standalone",
             "--nproc_per_node=2", "-m", "varcon", command, "--checkpoint", str(run),
             "--output-dir", str(two), *EVAL],
            capture_output=True, text=True, timeout=300, env=env,
        )
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
        assert proc.stdout.count(f"{command} (digits)") == 1  # rank 0 prints, rank 1 does not

    # Gathered features are the single-process features, in dataset order.
    for split in ("train", "test"):
        a = np.load(one / "features" / f"{split}_encoder.npz")
        b = np.load(two / "features" / f"{split}_encoder.npz")
        np.testing.assert_array_equal(a["labels"], b["labels"])
        np.testing.assert_allclose(a["features"].astype(np.float32),
                                   b["features"].astype(np.float32), rtol=2e-3, atol=2e-3)
    knn_one = json.loads((one / "knn.json").read_text())["results"]
    knn_two = json.loads((two / "knn.json").read_text())["results"]
    for k in ("5", "50"):  # the test split has 450 images: one image is 0.22 points
        assert abs(knn_one["top1"][k] - knn_two["top1"][k]) <= 0.23
    lin_one = json.loads((one / "linear.json").read_text())["results"]
    lin_two = json.loads((two / "linear.json").read_text())["results"]
    assert abs(lin_one["top1"] - lin_two["top1"]) <= 0.5
    assert lin_two["n_test"] == lin_one["n_test"] == 450
