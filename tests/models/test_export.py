"""Exported encoders (``varcon.export``): a checkpoint's encoder (and head) as
safetensors + JSON rebuilds bit for bit through ``varcon.load_encoder``, with its
preprocessing as ``encoder.transform``; ``--format torchvision`` gives a state dict whose
``load_state_dict(strict=False)`` on torchvision's ResNet reports exactly the documented
keys; every bad input gets a clear error and leaves earlier files intact.

Checkpoints are written without training (``ckpttools.write_checkpoint``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from safetensors.torch import load_file, save_file
from torch import nn

import varcon
from ckpttools import write_checkpoint
from varcon.data import CIFAR10_MEAN, CIFAR10_STD, EvalTransform
from varcon.export import export_encoder
from varcon.export.card import CARD_FILE
from varcon.models import register_model
from varcon.runtime.checkpoint import CheckpointError, load_encoder, load_network, load_trained
from varcon.runtime.checkpoint.trained import (
    ENCODER_FILE,
    EXPORT_FORMAT_VERSION,
    HEAD_FILE,
    META_FILE,
    preprocessing,
)


def images(n: int = 5, channels: int = 1, size: int = 8) -> torch.Tensor:
    return torch.randn(n, channels, size, size, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A digits-like small CNN run directory (1 channel, 8x8)."""
    run = tmp_path_factory.mktemp("export") / "run"
    write_checkpoint(run)
    return run


@pytest.fixture(scope="module")
def exported(ckpt: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("exported") / "enc"
    export_encoder(ckpt, out, head=True)
    return out


# ----------------------------------------------------------------------------- round trip


def test_export_round_trip_is_bit_exact(ckpt, exported):
    original = load_encoder(ckpt)
    for where in (exported, exported / META_FILE, exported / ENCODER_FILE):
        reloaded = varcon.load_encoder(where)
        assert type(reloaded) is type(original)
        assert not any(m.training for m in reloaded.modules())
        x = images()
        with torch.no_grad():
            assert torch.equal(reloaded(x), original(x))
        for (k1, v1), (k2, v2) in zip(reloaded.state_dict().items(),
                                      original.state_dict().items(), strict=True):
            assert k1 == k2 and torch.equal(v1, v2)


def test_head_export_round_trip_is_bit_exact(ckpt, exported):
    net, _ = load_network(ckpt)
    model = load_trained(exported)
    rebuilt = model.network()
    x = images()
    with torch.no_grad():
        assert torch.equal(rebuilt(x), net(x))
    assert model.spec["head_dim"] == 128 and model.spec["num_classes"] == 10


def test_export_holds_weights_and_json_only(ckpt, exported, tmp_path):
    assert sorted(p.name for p in exported.iterdir()) == [CARD_FILE, ENCODER_FILE, HEAD_FILE,
                                                          META_FILE]
    raw = torch.load(ckpt / "checkpoints" / "last.pt", weights_only=True)
    assert raw["optimizer"]["state"]  # the checkpoint has optimizer state; the export not
    enc = load_file(exported / ENCODER_FILE)
    head = load_file(exported / HEAD_FILE)
    assert set(enc) == {k[len("encoder."):] for k in raw["model"] if k.startswith("encoder.")}
    assert set(head) == {k[len("head."):] for k in raw["model"] if k.startswith("head.")}
    for k, v in enc.items():
        assert torch.equal(v, raw["model"][f"encoder.{k}"])
    # Without --head there is no head file, and the export cannot give head features.
    plain = tmp_path / "plain"
    export_encoder(ckpt, plain)
    assert sorted(p.name for p in plain.iterdir()) == [CARD_FILE, ENCODER_FILE, META_FILE]
    model = load_trained(plain)
    assert model.head is None
    with pytest.raises(CheckpointError, match="exported without --head"):
        model.network()
    with pytest.raises(CheckpointError, match="exported without --head"):
        export_encoder(plain, tmp_path / "again", head=True)


def test_json_describes_the_encoder(ckpt, exported):
    meta = json.loads((exported / META_FILE).read_text())
    assert meta["format"] == "varcon-encoder" and meta["format_version"] == EXPORT_FORMAT_VERSION
    assert meta["architecture"] == "small_cnn"
    assert meta["arguments"] == {"in_channels": 1, "image_size": 8}
    assert meta["out_dim"] == 128 and meta["method"] == "varcon"
    assert (meta["image_size"], meta["in_channels"]) == (8, 1)
    assert meta["mean"] == [0.3053] and meta["std"] == [0.3758]
    assert meta["weights"] == {"encoder": ENCODER_FILE, "head": HEAD_FILE}
    assert meta["head"] == {"method": "varcon", "kind": "projection", "num_classes": 10,
                            "head_dim": 128, "head_hidden": None}
    assert meta["source"]["checkpoint"] == str((ckpt / "checkpoints" / "last.pt").resolve())
    assert meta["source"]["epoch"] == 3 and meta["source"]["dataset"] == "digits"
    assert meta["config"]["data"]["dataset"] == "digits"
    assert meta["preprocessing"]["center_crop"] == 8
    assert "torchvision" not in meta


def test_re_export_of_an_export_is_identical(exported, tmp_path):
    again = tmp_path / "again"
    export_encoder(exported, again, head=True)
    for name in (ENCODER_FILE, HEAD_FILE):
        a, b = load_file(exported / name), load_file(again / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    m1 = json.loads((exported / META_FILE).read_text())
    m2 = json.loads((again / META_FILE).read_text())
    m1.pop("created"), m2.pop("created")
    m1.pop("card"), m2.pop("card")  # the card names the folder ("enc", "again")
    assert m1 == m2
    # Under the same name it is the same card.
    same = tmp_path / "same" / exported.name
    export_encoder(exported, same, head=True)
    assert (same / CARD_FILE).read_text() == (exported / CARD_FILE).read_text()


def test_export_goes_through_the_registry_for_any_encoder(tmp_path):
    """An encoder registered by name (as timm backbones are) exports and reloads with its
    factory arguments; nothing ResNet-specific is needed."""

    class Tiny(nn.Module):
        def __init__(self, in_channels: int, image_size: int, hidden: int) -> None:
            super().__init__()
            self.body = nn.Sequential(nn.Flatten(), nn.Linear(in_channels * image_size ** 2,
                                                              hidden), nn.BatchNorm1d(hidden))
            self.out_dim = hidden

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.body(x)

    @register_model("test_export_tiny", overwrite=True)
    def tiny(*, in_channels: int = 3, image_size: int = 32, hidden: int = 4) -> nn.Module:
        return Tiny(in_channels, image_size, hidden)

    ckpt = write_checkpoint(tmp_path / "run", encoder="test_export_tiny", method="ce",
                            encoder_kwargs={"hidden": 6})
    out = tmp_path / "exp"
    export_encoder(ckpt, out, head=True)
    meta = json.loads((out / META_FILE).read_text())
    assert meta["arguments"] == {"in_channels": 1, "image_size": 8, "hidden": 6}
    assert meta["head"]["kind"] == "linear"
    model, (net, _) = load_trained(out), load_network(ckpt)
    x = images()
    with torch.no_grad():
        assert torch.equal(model.encoder(x), net.encoder(x))
        assert torch.equal(model.network()(x), net(x))


# ---------------------------------------------------------------------------- transform


def test_transform_is_the_evaluation_transform(ckpt, exported):
    for source in (ckpt, exported):
        t = load_encoder(source).transform
        gen = torch.Generator().manual_seed(0)
        for shape in [(1, 8, 8), (1, 11, 9), (1, 30, 30)]:
            x = torch.randint(0, 256, shape, dtype=torch.uint8, generator=gen)
            out = t(x)
            assert type(out) is torch.Tensor and out.dtype == torch.float32
            assert torch.equal(out, EvalTransform(8, mean=[0.3053], std=[0.3758])(x))
    # Large images: resize the shorter side to int(S * 256 / 224), then centre crop.
    big = torch.randint(0, 256, (3, 150, 120), dtype=torch.uint8, generator=gen)
    mean, std = [0.4, 0.5, 0.6], [0.2, 0.25, 0.3]
    assert torch.equal(preprocessing(96, mean, std, 3)(big),
                       EvalTransform(96, mean=mean, std=std)(big))


def test_transform_takes_pil_images_and_converts_channels(ckpt):
    encoder = load_encoder(ckpt)
    rgb = np.random.default_rng(0).integers(0, 256, size=(12, 10, 3), dtype=np.uint8)
    pil = Image.fromarray(rgb, "RGB")
    x = encoder.transform(pil)
    assert x.shape == (1, 8, 8) and x.dtype == torch.float32
    grey = torch.from_numpy(np.array(pil.convert("L"))).unsqueeze(0)
    assert torch.equal(x, encoder.transform(grey))
    with torch.no_grad():
        assert encoder(x[None]).shape == (1, 128)
    # An RGB encoder: grey and RGBA images become RGB.
    t = preprocessing(8, [0.5] * 3, [0.25] * 3, 3)
    assert t(pil.convert("L")).shape == (3, 8, 8)
    assert t(pil.convert("RGBA")).shape == (3, 8, 8)
    assert torch.equal(t(pil.convert("RGBA")), t(pil))
    # The transform is no sub-module: eval flags and state dict are the encoder's own.
    assert "transform" not in dict(encoder.named_children())


# ---------------------------------------------------------------------------- torchvision


def _tv_load(out: Path, arch: str) -> tuple[torchvision.models.ResNet, object]:
    meta = json.loads((out / META_FILE).read_text())
    tv = getattr(torchvision.models, arch)()
    state = torch.load(out / meta["torchvision"]["file"], weights_only=True)
    return tv, tv.load_state_dict(state, strict=False)


def test_torchvision_format_cifar_stem_reports_conv1_and_fc(tmp_path):
    ckpt = write_checkpoint(tmp_path / "run", encoder="resnet18", dataset="cifar10",
                            in_channels=3, image_size=32,
                            config={"data": {"root": str(tmp_path)}})
    out = tmp_path / "tv"
    export_encoder(ckpt, out, format="torchvision")
    meta = json.loads((out / META_FILE).read_text())
    report = meta["torchvision"]
    assert report["file"] == "torchvision_resnet18.pth" and report["stem"] == "cifar"
    assert report["missing_keys"] == ["conv1.weight", "fc.weight", "fc.bias"]
    assert report["unexpected_keys"] == []
    assert list(report["left_out"]) == ["conv1.weight"]
    assert "[64, 3, 3, 3]" in report["left_out"]["conv1.weight"]
    tv, result = _tv_load(out, "resnet18")
    assert result.missing_keys == report["missing_keys"]
    assert result.unexpected_keys == []
    # Following the note (CIFAR conv1, no max-pool) gives the encoder's features exactly.
    tv.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    tv.conv1.weight.data.copy_(load_file(out / ENCODER_FILE)["conv1.weight"])
    tv.maxpool, tv.fc = nn.Identity(), nn.Identity()
    x = images(2, 3, 32)
    with torch.no_grad():
        assert torch.equal(tv.eval()(x), load_encoder(out)(x))


def test_torchvision_format_imagenet_stem_pooled_features_bit_exact(tmp_path):
    """ImageNet stem (image_size > 64): every encoder key loads, only fc.* is missing, and
    torchvision's pooled features (fc = Identity) equal the encoder's output bit for bit:
    both pool with AdaptiveAvgPool2d((1, 1)) and flatten."""
    ckpt = write_checkpoint(tmp_path / "run", encoder="resnet18", dataset="imagefolder",
                            in_channels=3, image_size=72,
                            config={"data": {"root": str(tmp_path)}})
    out = tmp_path / "tv"
    export_encoder(ckpt, out, format="torchvision")
    report = json.loads((out / META_FILE).read_text())["torchvision"]
    assert report["stem"] == "imagenet" and report["left_out"] == {}
    assert report["missing_keys"] == ["fc.weight", "fc.bias"]
    tv, result = _tv_load(out, "resnet18")
    assert result.missing_keys == ["fc.weight", "fc.bias"] and result.unexpected_keys == []
    tv.fc = nn.Identity()
    x = images(2, 3, 72)
    with torch.no_grad():
        assert torch.equal(tv.eval()(x), load_encoder(ckpt)(x))


def test_torchvision_format_is_for_resnets_of_torchvision_width(ckpt, tmp_path):
    with pytest.raises(CheckpointError, match="'small_cnn' has no torchvision counterpart"):
        export_encoder(ckpt, tmp_path / "a", format="torchvision")
    narrow = write_checkpoint(tmp_path / "narrow", encoder="resnet18", in_channels=3,
                              image_size=32, encoder_kwargs={"width": 8},
                              config={"data": {"dataset": "cifar10",
                                               "root": str(tmp_path)}})
    with pytest.raises(CheckpointError, match="width 8, torchvision's has 64"):
        export_encoder(narrow, tmp_path / "b", format="torchvision")
    with pytest.raises(ValueError, match="unknown export format 'onnx'"):
        export_encoder(ckpt, tmp_path / "c", format="onnx")
    assert not any((tmp_path / n).exists() for n in "abc")


# ---------------------------------------------------------------------------- bad input


def _copy(src: Path, dst: Path) -> Path:
    dst.mkdir(parents=True)
    for p in src.iterdir():
        (dst / p.name).write_bytes(p.read_bytes())
    return dst


def test_folder_without_json(exported, tmp_path):
    folder = _copy(exported, tmp_path / "copy")
    (folder / META_FILE).unlink()
    with pytest.raises(CheckpointError, match=f"no {META_FILE}") as info:
        load_encoder(folder)
    assert "encoder.safetensors" in str(info.value) and "export" in str(info.value)


def test_json_of_a_newer_format_version(exported, tmp_path):
    folder = _copy(exported, tmp_path / "copy")
    meta = json.loads((folder / META_FILE).read_text())
    meta["format_version"] = EXPORT_FORMAT_VERSION + 1
    (folder / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="newer varcon") as info:
        load_encoder(folder)
    assert "upgrade varcon" in str(info.value)


@pytest.mark.parametrize("edit", ["not json", "other format", "no architecture"])
def test_damaged_json(exported, tmp_path, edit):
    folder = _copy(exported, tmp_path / "copy")
    meta = json.loads((folder / META_FILE).read_text())
    if edit == "not json":
        (folder / META_FILE).write_text("{ nope")
        match = "cannot read"
    elif edit == "other format":
        meta["format"] = "something-else"
        (folder / META_FILE).write_text(json.dumps(meta))
        match = "not a varcon encoder description"
    else:
        del meta["architecture"]
        (folder / META_FILE).write_text(json.dumps(meta))
        match = "'architecture' is missing"
    with pytest.raises(CheckpointError, match=match):
        load_encoder(folder)


def test_weights_that_do_not_fit_name_the_first_key_and_both_shapes(exported, tmp_path):
    folder = _copy(exported, tmp_path / "copy")
    weights = load_file(folder / ENCODER_FILE)
    first = next(iter(load_encoder(exported).state_dict()))  # the module's first entry
    assert weights[first].ndim == 4
    weights[first] = torch.zeros(*weights[first].shape[:-1], weights[first].shape[-1] + 1)
    save_file(weights, folder / ENCODER_FILE)
    with pytest.raises(CheckpointError, match="does not fit small_cnn") as info:
        load_encoder(folder)
    message = str(info.value)
    shape = list(load_file(exported / ENCODER_FILE)[first].shape)
    assert f"first mismatching key {first!r}" in message
    assert str(shape) in message and str([*shape[:-1], shape[-1] + 1]) in message
    # A missing key, a truncated file and a missing file are named too.
    del weights[first]
    save_file(weights, folder / ENCODER_FILE)
    with pytest.raises(CheckpointError, match=re.escape(f"1 key(s) missing, first {first!r}")):
        load_encoder(folder)
    data = (exported / ENCODER_FILE).read_bytes()
    (folder / ENCODER_FILE).write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"cannot read .* as safetensors"):
        load_encoder(folder)
    (folder / HEAD_FILE).unlink()
    (folder / ENCODER_FILE).write_bytes(data)
    with pytest.raises(CheckpointError, match=r"head\.safetensors is missing"):
        load_trained(folder)


def test_existing_export_is_kept_without_overwrite_and_replaced_with_it(ckpt, tmp_path):
    out = tmp_path / "exp"
    export_encoder(ckpt, out, head=True)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(ValueError, match="exists; pass --overwrite"):
        export_encoder(ckpt, out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    # With overwrite the folder is replaced whole: the head of the earlier export is gone.
    export_encoder(ckpt, out, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == [CARD_FILE, ENCODER_FILE, META_FILE]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exp"]  # no temporary folders left
    # A failure while writing leaves the earlier export as it was.
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(CheckpointError, match="no torchvision counterpart"):
        export_encoder(ckpt, out, format="torchvision", overwrite=True)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_overwrite_only_replaces_an_export(ckpt, tmp_path):
    other = tmp_path / "results"
    other.mkdir()
    (other / "keep.txt").write_text("precious")
    with pytest.raises(ValueError, match="not a varcon export"):
        export_encoder(ckpt, other, overwrite=True)
    assert (other / "keep.txt").read_text() == "precious"
    with pytest.raises(ValueError, match="not a varcon export"):
        export_encoder(ckpt, ckpt, overwrite=True)  # the run directory itself
    file = tmp_path / "file.txt"
    file.write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        export_encoder(ckpt, file)
    empty = tmp_path / "empty"
    empty.mkdir()
    export_encoder(ckpt, empty)  # an empty folder is used as it is
    assert (empty / META_FILE).is_file()


def test_a_timm_backbone_exports_and_reloads_bit_exact(tmp_path):
    pytest.importorskip("timm")
    ckpt = write_checkpoint(tmp_path / "run", encoder="timm/test_resnet", in_channels=3,
                            image_size=32, config={"data": {"dataset": "cifar10",
                                                            "root": str(tmp_path)}})
    out = tmp_path / "exp"
    export_encoder(ckpt, out, head=True)
    assert json.loads((out / META_FILE).read_text())["architecture"] == "timm/test_resnet"
    x = images(2, 3, 32)
    with torch.no_grad():
        assert torch.equal(load_encoder(out)(x), load_encoder(ckpt)(x))
    with pytest.raises(CheckpointError, match="'timm/test_resnet' has no torchvision"):
        export_encoder(ckpt, tmp_path / "tv", format="torchvision")


def test_old_checkpoint_without_normalisation_gets_its_datasets(tmp_path):
    """Checkpoints written before the spec recorded mean/std: the config's dataset gives
    them (as evaluation does), and the export records them."""
    file = write_checkpoint(tmp_path / "old.pt", encoder="resnet18", in_channels=3,
                            image_size=32, encoder_kwargs={"width": 8},
                            config={"data": {"dataset": "cifar10", "root": str(tmp_path)}})
    state = torch.load(file, weights_only=True)
    del state["network"]["mean"], state["network"]["std"]
    torch.save(state, file)
    export_encoder(file, tmp_path / "exp")
    meta = json.loads((tmp_path / "exp" / META_FILE).read_text())
    assert meta["mean"] == list(CIFAR10_MEAN) and meta["std"] == list(CIFAR10_STD)
    x = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
    expected = EvalTransform(32, mean=CIFAR10_MEAN, std=CIFAR10_STD)(x)
    assert torch.equal(load_encoder(file).transform(x), expected)
    assert torch.equal(load_encoder(tmp_path / "exp").transform(x), expected)
