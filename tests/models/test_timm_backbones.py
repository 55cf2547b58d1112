"""timm backbones (``model.encoder=timm/<name>``): pooled features of width ``out_dim``, one
training step per family, config validation of names and arguments, a ``varcon pretrain``
run whose checkpoint rebuilds to the same outputs, and the error when timm is missing."""

from __future__ import annotations

import sys

import pytest
import torch

from varcon.losses import VarConLoss
from varcon.models import build_network, create_model
from varcon.runtime.checkpoint import load_checkpoint, load_encoder, load_network
from varcon.runtime.config import ConfigError, config_from_dict

timm = pytest.importorskip("timm")

# (name, kwargs, feature width): the smallest member of each family, on 32 px images
FAMILIES = [
    ("convnext_atto", {}, 320),
    ("vit_tiny_patch16_224", {"img_size": 32}, 192),
    ("resnet18", {}, 512),
]


@pytest.mark.parametrize(("name", "kwargs", "width"), FAMILIES)
def test_one_training_step_per_family(name, kwargs, width):
    torch.manual_seed(0)
    net = build_network("varcon", f"timm/{name}", num_classes=3, in_channels=3,
                        image_size=32, **kwargs)
    assert net.encoder.out_dim == width and net.out_dim == width
    images = torch.rand(6, 3, 32, 32)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    assert net.encode(images).shape == (6, width)  # pooled features, no classifier
    stem = next(net.encoder.parameters())  # the first layer: gradient flows all the way
    before = stem.detach().clone()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    loss = VarConLoss()(net(images), labels)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)
    optimizer.step()
    assert not torch.equal(stem, before)


def test_encoder_is_timms_own_module_with_its_state_dict():
    enc = create_model("timm/resnet18", in_channels=1, image_size=32)
    ref = timm.create_model("resnet18", pretrained=False, num_classes=0, in_chans=1)
    assert type(enc) is type(ref)
    assert enc.state_dict().keys() == ref.state_dict().keys()  # timm's keys, no wrapper
    assert enc.conv1.in_channels == 1
    # models with a hidden pre-logits layer: out_dim is what forward returns
    mobile = create_model("timm/mobilenetv3_small_050", in_channels=3, image_size=32)
    assert mobile(torch.rand(2, 3, 32, 32)).shape == (2, mobile.out_dim) and mobile.out_dim == 1024


def test_vit_with_another_image_size_names_the_fix():
    with pytest.raises(ValueError, match=r"model.kwargs.img_size=32"):
        create_model("timm/vit_tiny_patch16_224", in_channels=3, image_size=32)


def test_config_validation_of_names_and_kwargs():
    ok = config_from_dict({"model": {"encoder": "timm/convnext_atto", "kwargs": {
        "drop_path_rate": 0.1}}})
    assert ok.model.encoder == "timm/convnext_atto"
    cases = [
        ({"encoder": "timm/convnext_nope"}, ["unknown timm model 'convnext_nope'",
                                             "timm.list_models('convnext*')"]),
        ({"encoder": "timm/convnext_atto", "kwargs": {"bogus_arg": 1}}, ["bogus_arg"]),
        ({"encoder": "timm/resnet18", "kwargs": {"pretrained": True}},
         ["pretrained=False", "model.pretrained=PATH"]),
        ({"encoder": "timm/resnet18", "kwargs": {"checkpoint_path": "x.pth"}},
         ["checkpoint_path", "model.pretrained=PATH"]),
        ({"encoder": "timm/resnet18", "kwargs": {"num_classes": 10}}, ["num_classes"]),
        ({"encoder": "timm/resnet18", "kwargs": {"global_pool": ""}}, ["pooled features"]),
    ]
    for model, needles in cases:
        with pytest.raises(ConfigError) as info:
            config_from_dict({"model": model})
        for needle in needles:
            assert needle in str(info.value), (needle, str(info.value))
    with pytest.raises(ValueError, match=r"timm/<name>"):
        create_model("convnext_atto")  # without the prefix: the message says how


def test_missing_timm_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # what a missing package looks like
    with pytest.raises(ImportError, match=r'pip install "varcon\[timm\]"'):
        create_model("timm/resnet18", in_channels=3, image_size=32)
    with pytest.raises(ConfigError, match=r'pip install "varcon\[timm\]"'):
        config_from_dict({"model": {"encoder": "timm/resnet18"}})


def test_pretrain_with_a_timm_backbone_rebuilds_from_its_checkpoint(tmp_path, capsys):
    from varcon.cli.main import main

    run = tmp_path / "run"
    code = main(["pretrain", "--output-dir", str(run), "model.encoder=timm/vit_tiny_patch16_224",
                 "model.kwargs={img_size: 32, depth: 2}", "data.image_size=32",
                 "data.per_class=4", "optim.epochs=1", "optim.warmup_epochs=0",
                 "optim.batch_size=16", "train.max_steps_per_epoch=2", "train.progress=off",
                 "train.tau2_every=0", "linear.run_after_pretrain=false", "knn.enabled=false",
                 "cluster.enabled=false", "data.num_workers=0"])
    assert code == 0, capsys.readouterr().err
    state = load_checkpoint(run)
    assert state["network"]["encoder"] == "timm/vit_tiny_patch16_224"
    assert state["network"]["encoder_kwargs"] == {"img_size": 32, "depth": 2}
    encoder = load_encoder(run)
    assert encoder.out_dim == 192 and not encoder.training
    # timm itself, given the checkpoint's encoder weights, computes the same features
    ref = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0,
                            in_chans=1, img_size=32, depth=2)
    ref.load_state_dict({k[len("encoder."):]: v for k, v in state["model"].items()
                         if k.startswith("encoder.")})
    net, _ = load_network(run)
    images = torch.rand(4, 1, 32, 32)  # digits: one channel
    with torch.no_grad():
        out = encoder(images)
        assert out.shape == (4, 192)
        torch.testing.assert_close(out, ref.eval()(images), rtol=0, atol=0)
        torch.testing.assert_close(out, net.encode(images), rtol=0, atol=0)
