"""Self- and semi-supervised pre-training end to end on digits and on generated image folders:
what labels reach the loss, resume with the prototypes, collapse warnings, folders without
class folders, and the errors that name the fix."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import varcon.engine.state as state_mod
from datagen import write_image_folder
from varcon.engine.pretrain import pretrain
from varcon.methods import TrainingWarning
from varcon.runtime.checkpoint import load_checkpoint
from varcon.runtime.config import ConfigError, apply_overrides, config_from_dict, read_yaml
from varcon.runtime.config import resolve_config_path as _resolve

FAST = [
    "optim.epochs=2", "optim.warmup_epochs=0", "optim.batch_size=32",
    "train.max_steps_per_epoch=3", "train.save_every=1", "train.progress=off",
    "linear.run_after_pretrain=false", "data.num_workers=0", "train.tau2_every=0",
]
SSL = ["method=varcon_ssl", "ssl.num_prototypes=16", "data.labels=none"]


def digits_config(tmp_path, *overrides, name="run"):
    data = read_yaml(_resolve("digits"))
    data["output_dir"] = str(tmp_path / name)
    return config_from_dict(apply_overrides(data, [*FAST, *overrides]))


def record_labels(monkeypatch) -> list[torch.Tensor]:
    """The labels the method receives with the head's outputs, one tensor per step."""
    seen: list[torch.Tensor] = []
    real = state_mod.get_method

    def recording(name):
        spec = real(name)

        def compute(loss_fn, outputs, labels):
            seen.append(labels.clone())
            return spec.compute(loss_fn, outputs, labels)

        return dataclasses.replace(spec, compute=compute)

    monkeypatch.setattr(state_mod, "get_method", recording)
    return seen


def _metrics(run: Path) -> list[dict]:
    import json
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_simclr_trains_without_labels_and_logs_the_effective_rank(tmp_path, monkeypatch):
    seen = record_labels(monkeypatch)
    pretrain(digits_config(tmp_path, "method=simclr", "loss.temperature=0.5", "data.labels=none"))
    assert len(seen) == 6 and all(bool((y == -1).all()) for y in seen)  # labels hidden
    last = _metrics(tmp_path / "run")[-1]
    assert 1.0 < last["effective_rank"] <= 128 and np.isfinite(last["loss"])


def assert_resuming_epoch_1_repeats_the_run(tmp_path, overrides, last) -> None:
    """Run ``a`` copied to ``b`` with its epoch-1 checkpoint as the last, resumed with
    ``overrides``: the network and the loss's state end bit for bit as ``last`` (a's)."""
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    ckpts = tmp_path / "b" / "checkpoints"
    shutil.copy(ckpts / "epoch_1.pt", ckpts / "last.pt")
    cfg = digits_config(tmp_path, *overrides, name="b")
    cfg.resume = str(tmp_path / "b")
    pretrain(cfg)
    resumed = load_checkpoint(tmp_path / "b")
    for part in ("model", "loss"):
        assert resumed[part].keys() == last[part].keys()
        for key in last[part]:
            assert torch.equal(resumed[part][key], last[part][key]), (part, key)


def test_varcon_ssl_resumes_its_prototypes_bit_exactly_and_a_healthy_run_warns_nothing(
        tmp_path, recwarn):
    pretrain(digits_config(tmp_path, *SSL, name="a"))
    assert not [w for w in recwarn if issubclass(w.category, TrainingWarning)]
    last = load_checkpoint(tmp_path / "a")
    first = load_checkpoint(tmp_path / "a" / "checkpoints" / "epoch_1.pt")
    assert set(last["loss"]) == {"prototypes", "last_won", "steps"}
    assert int(last["loss"]["steps"]) == 6 and int(first["loss"]["steps"]) == 3
    assert not torch.equal(first["loss"]["prototypes"], last["loss"]["prototypes"])
    record = _metrics(tmp_path / "a")[-1]
    for key in ("kl", "nll", "tau2_mean", "tau2_std", "instance_nll", "marginal_entropy",
                "dead_prototypes", "effective_rank", "tau2_at_bounds"):
        assert np.isfinite(record[key]), key
    assert 0 < record["marginal_entropy"] <= np.log(16) + 1e-6

    assert_resuming_epoch_1_repeats_the_run(tmp_path, SSL, last)


def test_a_queue_lets_prototypes_outnumber_a_steps_rows_and_resumes_bit_exactly(tmp_path):
    # K = 80 > 64 rows a step (batch 32 x 2 views), balanced with 64 queued rows
    queue = ["method=varcon_ssl", "data.labels=none", "ssl.num_prototypes=80",
             "ssl.queue_length=64"]
    pretrain(digits_config(tmp_path, *queue, name="a"))
    last = load_checkpoint(tmp_path / "a")
    assert int(last["loss"]["queue_filled"]) == 64 and last["loss"]["queue"].shape == (64, 128)
    assert torch.isfinite(last["loss"]["queue"]).all()
    assert_resuming_epoch_1_repeats_the_run(tmp_path, queue, last)


def test_labeled_fraction_labels_a_seeded_tenth_for_varcon_ssl_and_trains_varcon_on_it(
        tmp_path, monkeypatch):
    seen = record_labels(monkeypatch)
    pretrain(digits_config(tmp_path, "method=varcon_ssl", "ssl.num_prototypes=16",
                           "data.labeled_fraction=0.1", "optim.epochs=1",
                           "optim.batch_size=128", "train.max_steps_per_epoch=0", name="semi"))
    from varcon.runtime.data import build_train_data
    semi = build_train_data(digits_config(tmp_path, "method=varcon_ssl",
                                          "ssl.num_prototypes=16", "data.labeled_fraction=0.1"))
    targets = semi.pretrain_set.targets
    per_class = torch.bincount(targets)
    expected = int(sum(max(1, round(0.1 * int(n))) for n in per_class))
    assert len(semi.pretrain_set) == len(targets) and int((semi.pretrain_labels >= 0).sum()) \
        == len(semi.dataset) == expected
    labels = torch.cat(seen)[::2]  # one row per image (two views)
    assert len(labels) == len(targets) // 128 * 128  # every image, labelled or not
    labelled = labels[labels >= 0]
    assert 0.07 < len(labelled) / len(labels) < 0.13 and set(labelled.tolist()) == set(range(10))
    # the labels shown are the true ones
    shown = semi.pretrain_labels >= 0
    assert torch.equal(semi.pretrain_labels[shown], targets[shown])

    # supervised varcon with the same fraction trains on the labelled images alone, and the
    # labelled images are the same (seeded) ones
    sup = build_train_data(digits_config(tmp_path, "method=varcon",
                                         "data.labeled_fraction=0.1"))
    assert len(sup.pretrain_set) == len(sup.dataset) == expected and sup.pretrain_labels is None
    assert torch.equal(sup.dataset.indices, semi.dataset.indices)


def test_a_forced_collapse_is_reported_every_epoch(tmp_path, monkeypatch):
    """A head whose output ignores its input (zero weights, frozen): every embedding is the
    same direction, so the effective rank is 1 and one pseudo-class takes every image."""
    real = state_mod.build_network_from_spec

    def collapsed(spec):
        net = real(spec)
        last = [m for m in net.head.modules() if isinstance(m, torch.nn.Linear)][-1]
        with torch.no_grad():
            last.weight.zero_()
            last.bias.fill_(1.0)
        last.weight.requires_grad_(False)
        last.bias.requires_grad_(False)
        return net

    monkeypatch.setattr(state_mod, "build_network_from_spec", collapsed)
    with pytest.warns(TrainingWarning) as caught:
        pretrain(digits_config(tmp_path, *SSL, "ssl.dead_after=2"))
    messages = [str(w.message) for w in caught]
    assert any(m.startswith("epoch 1: embedding collapse: effective rank 1.00") for m in messages)
    assert any(m.startswith("epoch 2: pseudo-class collapse") for m in messages)
    assert any("dead prototypes: 15 of 16" in m for m in messages)


def _flat_folder(root: Path, n: int = 24) -> Path:
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)).save(
            root / f"img{i:03d}.png")
    return root


def test_a_folder_without_class_folders_trains_self_supervised_and_says_how_to_evaluate(
        tmp_path, capsys):
    flat = _flat_folder(tmp_path / "photos")
    tree = tmp_path / "tree"
    write_image_folder(tree, classes=("a", "b"), per_class=6, size=(12, 12))
    cfg = digits_config(tmp_path, "data.dataset=imagefolder", f"data.root={flat}",
                        "method=simclr", "optim.batch_size=8", "linear.run_after_pretrain=true",
                        "train.eval_every=1", name="flat")
    summary = pretrain(cfg)
    out = capsys.readouterr().out
    assert "no labelled training image" in out and "varcon knn --checkpoint RUN" in out
    assert "effective_rank" in summary and "knn_top1@20" not in summary
    assert "val_knn_top1" not in _metrics(tmp_path / "flat")[-1]
    # the encoder is then evaluated on a labelled tree, as the message says
    from varcon.evaluation.commands import evaluate_checkpoint
    result = evaluate_checkpoint("knn", str(tmp_path / "flat"), [f"data.root={tree}"],
                                 str(tmp_path / "knn"))
    assert (tmp_path / "knn" / "knn.json").is_file() and result


@pytest.mark.parametrize("method", ["varcon", "supcon", "ce"])
def test_a_folder_without_class_folders_needs_a_self_supervised_method(tmp_path, method):
    flat = _flat_folder(tmp_path / "photos", n=8)
    views = ["data.views=1"] if method == "ce" else []
    cfg = digits_config(tmp_path, "data.dataset=imagefolder", f"data.root={flat}",
                        f"method={method}", "optim.batch_size=8", *views)
    with pytest.raises(ValueError, match=f"method={method} is supervised.*method=simclr"):
        pretrain(cfg)


def test_an_empty_folder_is_an_error_that_shows_both_layouts(tmp_path):
    (tmp_path / "empty" / "train").mkdir(parents=True)
    cfg = digits_config(tmp_path, "data.dataset=imagefolder", f"data.root={tmp_path / 'empty'}",
                        "method=simclr")
    with pytest.raises(FileNotFoundError, match=r"no class folder and no image file.*without "
                                                r"labels"):
        pretrain(cfg)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        (["method=varcon", "data.labels=none"], "method=varcon is supervised.*method=simclr"),
        (["method=supcon", "ssl.num_prototypes=50"], "used by method=varcon_ssl only"),
        (["method=varcon_ssl", "ssl.num_prototypes=100", "optim.batch_size=32"],
         r"exceeds the 64 embeddings.*optim.batch_size >= 50"),
        (["method=varcon_ssl", "ssl.sinkhorn_iterations=0"], "ssl.sinkhorn_iterations: must"),
        (["method=varcon_ssl", "ssl.momentum=1.0"], "ssl.momentum"),
        (["method=simclr", "data.sampler=class_balanced", "data.samples_per_class=4"],
         "data.sampler=class_balanced builds batches from the labels"),
        (["data.labeled_fraction=0"], r"data.labeled_fraction: a fraction in \(0, 1\]"),
        (["method=varcon_ssl", "ssl.num_prototypes=100", "optim.batch_size=32",
          "ssl.queue_length=20"],
         r"exceeds the 64 embeddings .* plus ssl.queue_length=20 queued\).*<= 84.*"
         r"ssl.queue_length >= 36"),
        (["method=varcon_ssl", "ssl.queue_length=-1"], r"ssl.queue_length.*int >= 0"),
    ],
)
def test_bad_self_supervised_settings_are_rejected_before_work(tmp_path, overrides, match):
    with pytest.raises(ConfigError, match=match):
        digits_config(tmp_path, *overrides)
    assert not (tmp_path / "run").exists()


def test_too_few_prototypes_for_the_labelled_classes(tmp_path):
    cfg = digits_config(tmp_path, "method=varcon_ssl", "ssl.num_prototypes=5",
                        "data.labeled_fraction=0.5")
    with pytest.raises(ValueError, match=r"ssl\.num_prototypes=5 is less than the 10 classes"):
        pretrain(cfg)


def test_the_readme_command_on_an_unlabeled_folder_runs(tmp_path, capsys):
    """The README's copy-pasteable command, on a generated folder, cut to a few steps."""
    import re
    import shlex

    from varcon.cli.main import main

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("## Images without labels")[1].split("```bash")[1].split("```")[0]
    args = shlex.split(section.replace("\\\n", " "))
    assert args[:2] == ["varcon", "pretrain"] and "method=varcon_ssl" in args
    flat = _flat_folder(tmp_path / "photos", n=16)
    args = [re.sub(r"^data\.root=.*", f"data.root={flat}", a) for a in args[2:]]
    assert f"data.root={flat}" in args
    main(["pretrain", "--output-dir", str(tmp_path / "run"), *args, "optim.batch_size=8",
          "optim.epochs=1", "optim.warmup_epochs=0", "ssl.num_prototypes=8",
          "data.num_workers=0", "train.progress=off"])
    out = capsys.readouterr().out
    assert "no labelled training image" in out and "effective_rank" in out
    assert (tmp_path / "run" / "checkpoints" / "last.pt").is_file()
