"""Rebuilding trained networks from checkpoints: ``load_encoder`` / ``varcon.load_encoder``
give the trained encoder in eval mode, loading only tensors and plain data
(``weights_only=True``); checkpoints of other programs, pickled objects, truncated files and
specs that do not fit are refused with a clear error; checkpoints written before the spec
recorded ``encoder_kwargs``/``mean``/``std`` still load.

One tiny digits run is pre-trained for the module (its end-of-training evaluation is
replaced by a function that keeps the trained network, to compare against).
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from torch import nn

import varcon
from varcon.cli.main import main
from varcon.models import build_network_from_spec, network_spec
from varcon.runtime.checkpoint import (
    CheckpointError,
    find_checkpoint,
    load_checkpoint,
    load_encoder,
    load_network,
)

RUN_ARGS = ["optim.epochs=1", "optim.warmup_epochs=0", "optim.batch_size=64",
            "train.max_steps_per_epoch=2", "train.progress=off", "train.tau2_every=0"]


class Opaque:
    """A class that only unpickling with arbitrary code could rebuild."""

    def __init__(self) -> None:
        self.value = 3


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, nn.Module]:
    """``(run_dir, network as it was at the end of training)``."""
    import varcon.engine.pretrain as engine

    run = tmp_path_factory.mktemp("ckpt") / "run"
    kept: list[nn.Module] = []

    def keep(session, **options):  # options: what the engine passes on (on_result)
        kept.append(copy.deepcopy(session.net).eval())
        return {}

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(engine, "evaluate_after_pretrain", keep)
        assert main(["pretrain", "--output-dir", str(run), *RUN_ARGS]) == 0
    (net,) = kept
    return run, net


def images(n: int = 6) -> torch.Tensor:
    return torch.randn(n, 1, 8, 8, generator=torch.Generator().manual_seed(0))


def assert_same_features(encoder: nn.Module, net: nn.Module) -> None:
    x = images()
    with torch.no_grad():
        torch.testing.assert_close(encoder(x), net.encode(x))


@pytest.mark.parametrize("where", ["run_dir", "file", "top_level"])
def test_load_encoder_gives_the_trained_encoder_in_eval_mode(trained, where):
    run, net = trained
    if where == "run_dir":
        encoder = load_encoder(run)
    elif where == "file":
        encoder = load_encoder(run / "checkpoints" / "last.pt")
    else:
        encoder = varcon.load_encoder(str(run))
    assert not any(m.training for m in encoder.modules())
    assert encoder.out_dim == net.out_dim == 128
    assert all(p.device.type == "cpu" for p in encoder.parameters())
    assert_same_features(encoder, net)
    # Eval mode matters: BatchNorm uses its running statistics, so one image's features
    # do not depend on the rest of the batch.
    x = images()
    with torch.no_grad():
        torch.testing.assert_close(encoder(x[:1]), encoder(x)[:1])


def test_top_level_attribute_is_the_models_function():
    assert varcon.load_encoder is load_encoder
    with pytest.raises(AttributeError, match="no attribute 'load_encodr'"):
        varcon.load_encodr  # noqa: B018


def test_load_network_drops_optimizer_state(trained):
    run, net = trained
    raw = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert "optimizer" in raw  # a training checkpoint holds it ...
    loaded, state = load_network(run)
    assert "optimizer" not in state and "scaler" not in state  # ... evaluation drops it
    assert state["format"] == "varcon" and isinstance(state["config"], dict)
    assert not loaded.training
    with torch.no_grad():
        torch.testing.assert_close(loaded(images()), net(images()))


def test_spec_records_the_architecture_and_normalisation(trained):
    run, net = trained
    spec = load_checkpoint(run)["network"]
    assert spec["method"] == "varcon" and spec["encoder"] == "small_cnn"
    assert (spec["num_classes"], spec["in_channels"], spec["image_size"]) == (10, 1, 8)
    assert spec["encoder_kwargs"] == {}
    assert spec["mean"] == [pytest.approx(0.3053)] and spec["std"] == [pytest.approx(0.3758)]
    rebuilt = build_network_from_spec(spec)
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == \
        {k: v.shape for k, v in net.state_dict().items()}


def test_spec_with_encoder_kwargs_rebuilds_that_width():
    spec = network_spec("supcon", "resnet18", num_classes=10, in_channels=3, image_size=32,
                        encoder_kwargs={"width": 8})
    net = build_network_from_spec(spec)
    assert net.out_dim == 64  # 8 * width
    assert net.encoder.conv1.out_channels == 8
    # plain data only: a spec survives a weights_only round trip
    assert spec == network_spec(**{k: v for k, v in spec.items()
                                   if k not in ("method", "encoder")},
                                method="supcon", encoder="resnet18")


def _rewrite(run: Path, dest: Path, edit) -> Path:
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    edit(state)
    torch.save(state, dest)
    return dest


def test_old_checkpoint_without_kwargs_or_normalisation_still_loads(trained, tmp_path, capsys):
    run, net = trained

    def make_old(state):
        for key in ("encoder_kwargs", "mean", "std"):
            del state["network"][key]
        cfg = state["config"]  # and a config from before the evaluation sections
        for section in ("eval", "cluster", "fewshot", "robustness"):
            cfg.pop(section, None)
        cfg["model"].pop("kwargs", None)
        cfg["knn"]["k"] = 5  # one number, as old configs wrote it

    old = _rewrite(run, tmp_path / "old.pt", make_old)
    encoder = load_encoder(old)
    assert_same_features(encoder, net)
    # The evaluation commands take it too (normalisation from the data's statistics).
    out = tmp_path / "eval"
    assert main(["knn", "--checkpoint", str(old), "--output-dir", str(out),
                 "train.progress=off"]) == 0
    assert "top1.5" in capsys.readouterr().out
    assert (out / "knn.json").is_file()


def test_pickled_objects_are_refused(trained, tmp_path):
    run, _ = trained
    bad = _rewrite(run, tmp_path / "pickled.pt", lambda s: s.update(extra=Opaque()))
    with pytest.raises(CheckpointError, match="weights_only") as info:
        load_encoder(bad)
    assert str(bad) in str(info.value) and "refused" in str(info.value)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"state_dict": {"w": torch.zeros(2)}}, "not a varcon checkpoint"),
        ({"format": "varcon", "model": {}}, "has no 'network' entry"),
        ([torch.zeros(3)], "not a varcon checkpoint"),
    ],
)
def test_other_checkpoints_are_refused(tmp_path, content, message):
    path = tmp_path / "other.pt"
    torch.save(content, path)
    with pytest.raises(CheckpointError, match=message):
        load_encoder(path)


def test_truncated_and_non_torch_files_are_refused(trained, tmp_path):
    run, _ = trained
    data = (run / "checkpoints" / "last.pt").read_bytes()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(data[: len(data) // 2])
    text = tmp_path / "notes.pt"
    text.write_text("hello")
    for path in (truncated, text):
        with pytest.raises(CheckpointError, match="cannot read checkpoint") as info:
            load_encoder(path)
        assert str(path) in str(info.value)


def test_spec_that_does_not_fit_the_weights(trained, tmp_path):
    run, _ = trained
    bad = _rewrite(run, tmp_path / "bad.pt",
                   lambda s: s["network"].update(encoder="resnet18"))
    with pytest.raises(CheckpointError, match="does not fit encoder 'resnet18'"):
        load_encoder(bad)
    unknown = _rewrite(run, tmp_path / "unknown.pt",
                       lambda s: s["network"].update(encoder="no_such_net"))
    with pytest.raises(CheckpointError, match="cannot rebuild"):
        load_encoder(unknown)


def test_missing_checkpoint_names_what_to_pass(tmp_path):
    (tmp_path / "empty_run").mkdir()
    with pytest.raises(CheckpointError, match="checkpoint not found") as info:
        find_checkpoint(tmp_path / "empty_run")
    assert "run directory" in str(info.value)
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_encoder(tmp_path / "nope.pt")
