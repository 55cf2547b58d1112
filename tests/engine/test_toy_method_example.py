"""The example ``docs/examples/toy_method.py`` runs as published: a method registered from
outside the package trains, logs its statistics, checkpoints, resumes and evaluates."""

from __future__ import annotations

import json
import math
import runpy
from pathlib import Path

import pytest
import torch

from varcon.methods import METHODS, get_method, method_names
from varcon.runtime.checkpoint import load_checkpoint, load_encoder
from varcon.runtime.config import ConfigError, load_config

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "toy_method.py"


@pytest.fixture
def example():
    assert "align_uniform" not in method_names()
    with pytest.raises(ConfigError, match="method"):
        load_config(None, ["method=align_uniform"])
    namespace = runpy.run_path(str(EXAMPLE), run_name="toy_method_example")
    yield namespace
    METHODS.unregister("align_uniform")


def test_the_loss_is_what_the_docstring_says(example):
    z = torch.nn.functional.normalize(torch.randn(8, 4, generator=torch.Generator().manual_seed(0)),
                                      dim=1)
    align, uniform = example["AlignUniformLoss"](views=2)(z, torch.zeros(8))
    pairs = z.view(4, 2, 4)
    assert torch.isclose(align, ((pairs[:, 0] - pairs[:, 1]) ** 2).sum(1).mean())
    d2 = torch.cdist(z, z) ** 2
    off = ~torch.eye(8, dtype=torch.bool)
    assert torch.isclose(uniform, torch.exp(-2 * d2[off]).mean().log(), atol=1e-6)


def test_registered_method_trains_end_to_end(example, tmp_path, capsys):
    assert get_method("align_uniform") is example["ALIGN_UNIFORM"]
    summary = example["main"](tmp_path)
    run = tmp_path / "align-uniform"
    assert f"align_uniform on digits: kNN@20 {summary['knn_top1@20']:.1f}%" in \
        capsys.readouterr().out
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    for r in records:
        assert r["steps"] == 4 and r["skipped_steps"] == 0
        # the method's statistics, averaged over the epoch; loss = align + uniform per step
        assert math.isclose(r["loss"], r["align"] + r["uniform"], rel_tol=1e-5)
        assert 0 <= r["align"] <= 4 and r["uniform"] <= 0
    assert records[1]["loss"] < records[0]["loss"]
    state = load_checkpoint(run)
    assert state["network"]["method"] == "align_uniform"
    encoder = load_encoder(run)
    assert encoder(torch.zeros(2, 1, 8, 8)).shape == (2, encoder.out_dim)
    assert 10 < summary["knn_top1@20"] <= 100 and 10 < summary["linear_top1"] <= 100
