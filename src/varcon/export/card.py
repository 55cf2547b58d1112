"""The model card ``varcon export`` writes beside the weights: ``README.md`` in the Hugging Face
layout (YAML front matter, then Markdown), so the folder can be published as it is.

The front matter (``yaml.safe_dump``) holds ``library_name``, ``tags``, ``datasets``,
``pipeline_tag`` and a ``model-index`` with the run's evaluation results: the eval JSONs of
the run's evaluation folder (``RUN_DIR/eval``), read here by a small reader of their envelope
(``protocol``, ``eval_dataset``, ``results``; the layout of each protocol's ``results`` is
the one :mod:`varcon.evaluation.builtin_protocols` registers). ``license`` is left out: a
run records none. Nothing is uploaded.

The card is written by :func:`varcon.export.writer.export_encoder` into the temporary folder
that is renamed into place, so it appears with the weights or not at all; its SHA-256 is kept
in ``varcon_encoder.json`` (``card``), so that ``--overwrite`` recognises a card varcon wrote
and refuses to replace one that it did not write or that was edited since.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

__all__ = ["CARD_FILE", "card_is_ours", "card_sha256", "eval_results", "model_card"]

CARD_FILE = "README.md"
# Single-file protocols, in the report's order (linear, finetune, knn, cluster, fewshot,
# robustness), then the per-target transfer probes.
_SINGLE = ("linear", "finetune", "knn", "cluster", "fewshot", "robustness")
_TASK_NAMES = {"linear": "linear probe", "finetune": "fine-tuning", "knn": "kNN",
               "cluster": "clustering", "fewshot": "few-shot", "robustness": "robustness",
               "transfer": "transfer linear probe"}
_CLUSTER_SCORES = {"nmi": "NMI", "ari": "ARI"}
# A re-run keeps the earlier file as <stem>-<YYYYmmdd-HHMMSS>[-n].json: not current.
_KEPT_COPY_RE = re.compile(r"-\d{8}-\d{6}(?:-\d+)?$")


def card_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _metric(kind: str, value: Any, name: str) -> dict[str, Any] | None:
    number = _number(value)
    return None if number is None else {"type": kind, "value": number, "name": name}


def _k_order(k: str) -> tuple[int, Any]:
    return (0, int(k)) if k.isdigit() else (1, k)


def _metrics(protocol: str, res: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The model-index metrics of one result file's ``results`` (accuracies in %)."""
    found: list[dict[str, Any] | None] = []
    if protocol in ("linear", "finetune", "transfer"):
        found += [_metric("accuracy", res.get("top1"), "top-1 accuracy"),
                  _metric("accuracy", res.get("top5"), "top-5 accuracy")]
    elif protocol == "knn":
        by_k = res.get("top1")
        if isinstance(by_k, Mapping):
            for k in sorted(by_k, key=lambda k: _k_order(str(k))):
                found.append(_metric("accuracy", by_k[k], f"top-1 accuracy (k={k})"))
    elif protocol == "cluster":
        algorithms = res.get("algorithms")
        for alg, scores in (algorithms.items() if isinstance(algorithms, Mapping) else []):
            if isinstance(scores, Mapping):
                for score, label in _CLUSTER_SCORES.items():
                    found.append(_metric(score, scores.get(score), f"{label} ({alg})"))
    elif protocol == "fewshot":
        tasks = res.get("tasks")
        for task in tasks if isinstance(tasks, list) else []:
            if isinstance(task, Mapping):
                found.append(_metric(
                    "accuracy", task.get("mean"),
                    f"{task.get('n_way')}-way {task.get('k_shot')}-shot "
                    f"{task.get('classifier', '?')} accuracy"))
    elif protocol == "robustness":
        found.append(_metric("accuracy", res.get("mean_corruption_accuracy"),
                             "mean corruption accuracy"))
    return [m for m in found if m is not None]


def _same_file(a: Any, b: Any) -> bool | None:
    """Whether two recorded checkpoint paths name one file (None when that cannot be told)."""
    if not a or not b:
        return None
    try:
        pa, pb = Path(str(a)), Path(str(b))
        if pa.is_file() and pb.is_file():
            return pa.samefile(pb)
    except OSError:
        return None
    return None


def eval_results(eval_dir: Path, checkpoint: Any = None, default_dataset: str = "?"
                 ) -> tuple[list[dict[str, Any]], list[str]]:
    """The model-index ``results`` of the eval JSONs in ``eval_dir`` and a list of the files
    left out, with why (unreadable, no numbers, or the evaluation of another checkpoint file
    than ``checkpoint``)."""
    files: list[tuple[str, str, Path]] = [(p, "", eval_dir / f"{p}.json") for p in _SINGLE]
    if eval_dir.is_dir():
        for path in sorted(eval_dir.glob("transfer_*.json")):
            target = path.stem[len("transfer_"):]
            if target and not _KEPT_COPY_RE.search(target):
                files.append(("transfer", target, path))
    results: list[dict[str, Any]] = []
    left_out: list[str] = []
    for protocol, target, path in files:
        if not path.is_file():
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            left_out.append(f"{path.name}: unreadable ({type(exc).__name__})")
            continue
        if not isinstance(data, dict) or not isinstance(data.get("results"), dict):
            left_out.append(f"{path.name}: no results object")
            continue
        if data.get("protocol", protocol) != protocol:
            left_out.append(f"{path.name}: holds protocol {data.get('protocol')!r}")
            continue
        if _same_file(data.get("checkpoint"), checkpoint) is False:
            left_out.append(f"{path.name}: evaluates {data.get('checkpoint')}, not the exported "
                            "checkpoint")
            continue
        metrics = _metrics(protocol, data["results"])
        if not metrics:
            left_out.append(f"{path.name}: no numbers")
            continue
        dataset = str(data.get("eval_dataset") or target or default_dataset)
        name = _TASK_NAMES[protocol] + (f" → {target}" if target else "")
        task_type = "image-feature-extraction" if protocol == "cluster" else \
            "image-classification"
        results.append({"task": {"type": task_type, "name": name},
                        "dataset": {"name": dataset, "type": dataset},
                        "metrics": metrics})
    return results, left_out


# ----------------------------------------------------------------------------- the card


def _dataset_name(config: Mapping[str, Any], source: Mapping[str, Any]) -> str | None:
    data = config.get("data") if isinstance(config.get("data"), Mapping) else {}
    name = (data or {}).get("dataset") or source.get("dataset")
    root = (data or {}).get("root") or source.get("root")
    if name == "imagefolder" and root:
        name = Path(str(root)).name or name
    return str(name) if name else None


def _plain(obj: Any) -> Any:
    """Plain YAML-safe data (tuples to lists, anything else unknown to str)."""
    return json.loads(json.dumps(obj, default=str))


def _cell(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, (dict, list)) else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def _table(header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _value(value: float) -> str:
    return f"{value:.4g}" if abs(value) < 1 else f"{value:.2f}"


def model_card(meta: Mapping[str, Any], *, name: str, parameters: int,
               results: list[dict[str, Any]], left_out: list[str], files: list[str]) -> str:
    """The text of ``README.md`` for an export described by ``meta`` (the content of
    ``varcon_encoder.json``) in a folder called ``name``."""
    config = dict(meta.get("config") or {})
    source = dict(meta.get("source") or {})
    method = str(meta["method"])
    arch = str(meta["architecture"])
    dataset = _dataset_name(config, source)
    tags = ["varcon", "contrastive-learning", method, "image-feature-extraction", arch]
    front: dict[str, Any] = {
        "library_name": "varcon",
        "tags": list(dict.fromkeys(tags)),
    }
    if dataset:
        front["datasets"] = [dataset]
    front["pipeline_tag"] = "image-feature-extraction"
    if results:
        front["model-index"] = [{"name": name, "results": results}]
    head = dict(meta.get("head") or {})
    optim = dict(config.get("optim") or {})
    loss = dict(config.get("loss") or {})
    pre = dict(meta.get("preprocessing") or {})
    version = meta.get("varcon_version", "?")

    out: list[str] = ["---", yaml.safe_dump(_plain(front), sort_keys=False,
                                            allow_unicode=True).rstrip("\n"), "---", ""]
    out += [f"# {name}", "",
            f"A `{arch}` image encoder trained with **{method}** on "
            f"{f'`{dataset}`' if dataset else 'its training data'} with varcon (a "
            "contrastive-learning library). It "
            f"maps an image to a {meta['out_dim']}-dimensional feature vector.", ""]

    out += ["## Architecture", "",
            _table(("", ""), [
                ("encoder", f"`{arch}`"),
                ("arguments", f"`{json.dumps(meta.get('arguments', {}), sort_keys=True)}`"),
                ("feature dimension", meta["out_dim"]),
                ("parameters (encoder)", f"{parameters:,}"),
                ("head", f"{head.get('kind', '?')} ({method}): head_dim "
                         f"{head.get('head_dim')}, hidden {head.get('head_hidden') or '-'}, "
                         f"{head.get('num_classes')} classes; "
                         + ("exported (`head.safetensors`)" if "head.safetensors" in files
                            else "not exported (encoder only)")),
            ]), ""]

    normalize = dict(pre.get("normalize") or {})
    out += ["## Preprocessing", "",
            _table(("", ""), [
                ("channels", pre.get("channels", meta.get("in_channels"))),
                ("resize (shorter side)", pre.get("resize_shorter_side")),
                ("centre crop", pre.get("center_crop", meta.get("image_size"))),
                ("scale", pre.get("scale", "uint8 / 255")),
                ("normalize mean", normalize.get("mean", meta.get("mean"))),
                ("normalize std", normalize.get("std", meta.get("std"))),
            ]), "",
            "`encoder.transform` (below) is exactly this pipeline.", ""]

    rows: list[tuple[Any, ...]] = [("method", method)]
    if dataset:
        rows.append(("dataset", dataset))
    for label, key, where in (("epochs", "epochs", optim), ("batch size", "batch_size", optim),
                              ("optimizer", "optimizer", optim), ("learning rate", "lr", optim),
                              ("weight decay", "weight_decay", optim)):
        if key in where:
            rows.append((label, where[key]))
    if method != "ce" and "temperature" in loss:
        rows.append(("temperature", loss["temperature"]))
    if method.startswith("varcon") and "epsilon" in loss:
        rows.append(("epsilon", loss["epsilon"]))
    if source.get("epoch") is not None:
        rows.append(("checkpoint epoch", source["epoch"]))
    out += ["## Training", "", _table(("setting", "value"), rows), ""]
    if config:
        out += ["<details>", "<summary>Full training config</summary>", "", "```yaml",
                yaml.safe_dump(_plain(config), sort_keys=False, allow_unicode=True).rstrip("\n"),
                "```", "", "</details>", ""]

    out += ["## Evaluation", ""]
    if results:
        eval_rows = [(r["task"]["name"], r["dataset"]["name"], m["name"], _value(m["value"]))
                     for r in results for m in r["metrics"]]
        out += [_table(("evaluation", "dataset", "metric", "value"), eval_rows), "",
                "Accuracies are in %; NMI and ARI in [0, 1] (`varcon report` shows the same "
                "numbers).", ""]
    else:
        out += ["No evaluation results were found for this run (`varcon linear`, `varcon "
                "knn`, ... write them to the run's `eval/` folder before the export).", ""]
    if left_out:
        out += ["Left out: " + "; ".join(left_out) + ".", ""]

    out += ["## How to load", "", "With varcon installed:", "", "```python",
            "import torch", "import varcon", "from PIL import Image", "",
            f'encoder = varcon.load_encoder("{name}")  # this folder; eval mode',
            'x = encoder.transform(Image.open("image.jpg"))  # the preprocessing above',
            "with torch.no_grad():",
            f"    features = encoder(x[None])  # [1, {meta['out_dim']}]", "```", "",
            "Without `load_encoder`: the weights are a plain safetensors state dict, and "
            "`varcon_encoder.json` names the architecture and its arguments:", "",
            "```python", "from safetensors.torch import load_file",
            "from varcon.models import create_model", "",
            f"encoder = create_model({arch!r}, **{meta.get('arguments', {})!r})",
            f'encoder.load_state_dict(load_file("{name}/encoder.safetensors"))',
            "encoder.eval()", "```", ""]
    tv = meta.get("torchvision")
    if isinstance(tv, Mapping):
        out += [f"For torchvision, `{tv.get('file')}` is a state dict for "
                f"`{tv.get('model')}()` (load it with `strict=False`); {tv.get('note')}.", ""]
    out += [f"Written by `varcon export` (varcon {version}).", ""]
    return "\n".join(out)


def card_is_ours(folder: Path, meta_file: str) -> bool:
    """Whether ``folder/README.md`` is absent or the card varcon wrote there, unedited (its
    SHA-256 is the one ``meta_file`` records)."""
    card = folder / CARD_FILE
    if not card.exists():
        return True
    try:
        meta = json.loads((folder / meta_file).read_text(encoding="utf-8"))
        recorded = meta.get("card", {}).get("sha256") if isinstance(meta, dict) else None
        return card.is_file() and recorded == hashlib.sha256(card.read_bytes()).hexdigest()
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        return False
