"""``docs/examples/toy_protocol.py`` end to end: a protocol registered from outside the package
(with its own config section) runs through ``evaluate_checkpoint`` on a tiny checkpoint,
writes its envelope, is a CLI command, and ``varcon report`` shows its column, or "not run"
with the command that produces it."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import torch
import yaml

from ckpttools import write_checkpoint
from scripttools import REPO, load_script
from varcon.evaluation import evaluate_checkpoint, get_protocol, protocol_names
from varcon.evaluation.registry import unregister_protocol
from varcon.reporting import build_report, evaluation_command, load_run, run_metrics
from varcon.runtime.config import config_from_dict, config_sections

EXAMPLE = REPO / "docs" / "examples" / "toy_protocol.py"
QUIET = ["train.progress=off", "data.num_workers=0"]


@pytest.fixture(scope="module")
def example() -> Iterator[ModuleType]:
    """The example imported (which registers it); unregistered afterwards."""
    module = load_script("toy_protocol", EXAMPLE)  # registers the protocol
    try:
        yield module
    finally:
        unregister_protocol("centroid")
        del sys.modules["toy_protocol"]
    assert "centroid" not in protocol_names() and "centroid" not in config_sections()


def _run(path: Path, seed: int) -> Path:
    """A run directory as the report reads it: the checkpoint and its config.yaml."""
    file = write_checkpoint(path, seed=seed)
    config = torch.load(file, weights_only=True)["config"]
    (path / "config.yaml").write_text(yaml.safe_dump({**config, "output_dir": str(path)}))
    return path


def test_the_example_runs_end_to_end_and_the_report_shows_it(example, tmp_path, capsys):
    assert protocol_names()[-1] == "centroid" and "centroid" in config_sections()
    assert config_from_dict({"centroid": {"normalize": False}}).centroid.normalize is False

    run, other = _run(tmp_path / "run", 0), _run(tmp_path / "other", 1)
    out = evaluate_checkpoint("centroid", run, QUIET)
    envelope = json.loads((run / "eval" / "centroid.json").read_text())
    assert envelope["protocol"] == "centroid" and envelope["eval_dataset"] == "digits"
    assert envelope["settings"] == {"normalize": True}
    assert envelope["results"] == out["results"]
    top1 = envelope["results"]["top1"]
    assert 0 <= top1 <= 100 and envelope["results"]["n_test"] == 450

    # the new section's settings come from overrides like any other
    evaluate_checkpoint("centroid", run, [*QUIET, "centroid.normalize=false"],
                        tmp_path / "raw")
    raw = json.loads((tmp_path / "raw" / "centroid.json").read_text())
    assert raw["settings"] == {"normalize": False}

    # a CLI command from the registration (parsers built after it)
    from varcon.cli.main import _parser

    args = _parser().parse_args(["centroid", "--checkpoint", str(run), "centroid.normalize=0"])
    assert args.command == "centroid" and args.overrides == ["centroid.normalize=0"]

    # the report: a column for the run that has it, "not run" and the command for the other
    assert run_metrics(load_run(run))["centroid.centroid top-1 (%)"] == top1
    report = build_report([run, other], tmp_path / "report", figures="none")
    md = report.markdown.read_text()
    every_metric = md[md.index("<summary>All metrics by group</summary>"):]
    row = next(line for line in every_metric.splitlines() if line.startswith("| centroid"))
    assert row.startswith("| centroid top-1 (%) |") and f"{top1:.2f}" in row
    assert "not run" in md
    command = evaluation_command("centroid", other)
    assert command == f"varcon centroid --checkpoint {other}" and f"`{command}`" in md
    assert get_protocol("centroid").file == "centroid.json"
