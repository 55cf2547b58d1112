"""The model card ``varcon export`` writes (``README.md``, Hugging Face layout): its YAML front
matter names the library, method, encoder and dataset and holds the run's evaluation results
(``model-index``) exactly as the eval JSONs give them; the body describes the encoder and how
to load it; a run without evaluations still gets a valid card; a README.md varcon did not write
is never replaced."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from ckpttools import write_checkpoint
from varcon.export import export_encoder
from varcon.export.card import CARD_FILE
from varcon.runtime.checkpoint.trained import META_FILE


def front_matter(card: Path) -> tuple[dict[str, Any], str]:
    text = card.read_text(encoding="utf-8")
    assert text.startswith("---\n")
    head, _, body = text[len("---\n"):].partition("\n---\n")
    data = yaml.safe_load(head)
    assert isinstance(data, dict)
    # Round trip: what safe_load reads, safe_dump writes back the same.
    assert yaml.safe_load(yaml.safe_dump(data, sort_keys=False)) == data
    return data, body


def envelope(protocol: str, results: dict[str, Any], checkpoint: Path,
             eval_dataset: str = "digits") -> dict[str, Any]:
    """A result file as ``varcon.evaluation.results.write_result`` writes it."""
    return {"protocol": protocol, "format_version": 1, "checkpoint": str(checkpoint),
            "method": "supcon", "encoder": "small_cnn", "dataset": "digits",
            "eval_dataset": eval_dataset, "features": "encoder", "class_names": [],
            "settings": {}, "results": results, "seconds": 1.0,
            "created": "2024-01-01T00:00:00"}


RESULTS = {
    "linear": {"top1": 91.25, "top5": 99.5, "n_test": 360},
    "knn": {"top1": {"20": 88.75, "200": 85.0}, "top5": {"20": 99.0, "200": 98.5}},
    "cluster": {"algorithms": {"kmeans": {"ari": 0.612, "nmi": 0.701, "ami": 0.69,
                                          "purity": 0.8}},
                "centroid_similarity_offdiag_mean": 0.1},
    "fewshot": {"tasks": [{"n_way": 5, "k_shot": 1, "classifier": "ncm", "mean": 70.5,
                           "ci95": 0.8}]},
    "robustness": {"mean_corruption_accuracy": 61.5, "clean_top1": 90.0},
    "finetune": {"top1": 95.0, "top5": 99.9},
}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("card") / "run"
    ckpt = write_checkpoint(run, method="supcon")
    (run / "eval").mkdir()
    for protocol, results in RESULTS.items():
        (run / "eval" / f"{protocol}.json").write_text(
            json.dumps(envelope(protocol, results, ckpt)))
    (run / "eval" / "transfer_cifar10.json").write_text(
        json.dumps(envelope("transfer", {"top1": 40.5, "top5": 80.25}, ckpt, "cifar10")))
    # An earlier copy kept by a re-run, and an evaluation of another checkpoint: left out.
    (run / "eval" / "transfer_cifar10-20240101-000000.json").write_text(
        json.dumps(envelope("transfer", {"top1": 1.0}, ckpt, "cifar10")))
    other = write_checkpoint(run / "checkpoints" / "epoch_1.pt", method="supcon")
    (run / "eval" / "transfer_svhn.json").write_text(
        json.dumps(envelope("transfer", {"top1": 2.0}, other, "svhn")))
    return run


def metrics_of(data: dict[str, Any]) -> dict[tuple[str, str, str], float]:
    [entry] = data["model-index"]
    return {(r["task"]["name"], r["dataset"]["name"], m["name"]): m["value"]
            for r in entry["results"] for m in r["metrics"]}


def test_card_front_matter_and_results_equal_the_eval_files(run, tmp_path):
    out = tmp_path / "my-encoder"
    export_encoder(run, out, head=True)
    data, body = front_matter(out / CARD_FILE)
    assert data["library_name"] == "varcon"
    assert data["pipeline_tag"] == "image-feature-extraction"
    assert {"varcon", "contrastive-learning", "supcon", "small_cnn",
            "image-feature-extraction"} <= set(data["tags"])
    assert data["datasets"] == ["digits"]
    assert "license" not in data  # a run records none
    assert data["model-index"][0]["name"] == "my-encoder"
    for result in data["model-index"][0]["results"]:
        assert set(result) == {"task", "dataset", "metrics"}
        assert result["task"]["type"] in ("image-classification", "image-feature-extraction")
    r = RESULTS
    assert metrics_of(data) == {
        ("linear probe", "digits", "top-1 accuracy"): r["linear"]["top1"],
        ("linear probe", "digits", "top-5 accuracy"): r["linear"]["top5"],
        ("fine-tuning", "digits", "top-1 accuracy"): r["finetune"]["top1"],
        ("fine-tuning", "digits", "top-5 accuracy"): r["finetune"]["top5"],
        ("kNN", "digits", "top-1 accuracy (k=20)"): r["knn"]["top1"]["20"],
        ("kNN", "digits", "top-1 accuracy (k=200)"): r["knn"]["top1"]["200"],
        ("clustering", "digits", "NMI (kmeans)"): r["cluster"]["algorithms"]["kmeans"]["nmi"],
        ("clustering", "digits", "ARI (kmeans)"): r["cluster"]["algorithms"]["kmeans"]["ari"],
        ("few-shot", "digits", "5-way 1-shot ncm accuracy"): r["fewshot"]["tasks"][0]["mean"],
        ("robustness", "digits", "mean corruption accuracy"):
            r["robustness"]["mean_corruption_accuracy"],
        ("transfer linear probe → cifar10", "cifar10", "top-1 accuracy"): 40.5,
        ("transfer linear probe → cifar10", "cifar10", "top-5 accuracy"): 80.25,
    }
    assert "transfer_svhn.json: evaluates" in body  # another checkpoint: named, left out
    # The body: architecture, preprocessing, training, results, how to load, version.
    for text in ("`small_cnn`", "| feature dimension | 128 |", "| normalize mean | [0.3053] |",
                 "| method | supcon |", "| temperature | 0.1 |", "<details>", "```yaml",
                 'varcon.load_encoder("my-encoder")', "encoder.transform(",
                 'load_file("my-encoder/encoder.safetensors")', "Written by `varcon export`",
                 "| linear probe | digits | top-1 accuracy | 91.25 |"):
        assert text in body, text
    assert "| epsilon |" not in body  # supcon has no epsilon
    config_block = body.split("```yaml\n", 1)[1].split("```", 1)[0]
    assert yaml.safe_load(config_block)["method"] == "supcon"
    meta = json.loads((out / META_FILE).read_text())
    assert meta["card"]["file"] == CARD_FILE and meta["card"]["evaluations"] == 7


def test_run_without_evaluations_gets_a_valid_card(tmp_path):
    run = tmp_path / "run"
    write_checkpoint(run, method="varcon")
    out = tmp_path / "enc"
    export_encoder(run, out)
    data, body = front_matter(out / CARD_FILE)
    assert data["library_name"] == "varcon" and "varcon" in data["tags"]
    assert not data.get("model-index")
    assert "No evaluation results" in body and "| epsilon | 0.02 |" in body
    assert "not exported (encoder only)" in body


def test_a_readme_varcon_did_not_write_is_never_replaced(run, tmp_path):
    out = tmp_path / "enc"
    export_encoder(run, out)
    export_encoder(run, out, overwrite=True)  # its own card is replaced
    (out / CARD_FILE).write_text((out / CARD_FILE).read_text() + "\nMy notes.\n")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(ValueError, match=r"README\.md was not written by varcon export"):
        export_encoder(run, out, overwrite=True)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    # A folder holding only someone's README.md is not an export, as before.
    other = tmp_path / "other"
    other.mkdir()
    (other / CARD_FILE).write_text("mine")
    with pytest.raises(ValueError, match="exists; pass --overwrite"):
        export_encoder(run, other)
    assert (other / CARD_FILE).read_text() == "mine"
