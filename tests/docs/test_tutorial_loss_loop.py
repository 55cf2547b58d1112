"""The tutorial ``docs/tutorials/loss_in_your_loop.py`` runs as published and learns: its
printed kNN accuracy on the digits test split is far above chance (10%)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

TUTORIAL = Path(__file__).resolve().parents[2] / "docs" / "tutorials" / "loss_in_your_loop.py"


@pytest.mark.slow
def test_tutorial_prints_a_high_knn_accuracy():
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    proc = subprocess.run([sys.executable, str(TUTORIAL)], capture_output=True, text=True,
                          timeout=300, env=env, cwd=TUTORIAL.parent)
    assert proc.returncode == 0, proc.stderr[-3000:]
    losses = [float(v) for v in re.findall(r"loss (\d+\.\d+)", proc.stdout)]
    assert len(losses) >= 2 and min(losses[-3:]) < losses[0]  # the loss falls
    match = re.search(r"kNN accuracy: (\d+\.\d)%", proc.stdout)
    assert match, proc.stdout
    assert float(match.group(1)) > 80.0
