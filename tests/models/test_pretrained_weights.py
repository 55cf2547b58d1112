"""``model.pretrained``: encoder weights from a local safetensors or torch state-dict file, for
our encoders and timm's; mismatches name the key and shapes; pre-training starts from the file
and its checkpoints do not need the file again."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from varcon.engine.pretrain import pretrain
from varcon.models import PretrainedWeightsError, create_model, load_encoder_weights
from varcon.runtime.checkpoint import load_checkpoint, load_encoder
from varcon.runtime.config import apply_overrides, config_from_dict, read_yaml
from varcon.runtime.config import resolve_config_path as _resolve


def small(seed: int, widths=(8, 16)) -> torch.nn.Module:
    torch.manual_seed(seed)
    return create_model("small_cnn", in_channels=1, image_size=8, widths=widths)


def assert_same(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        torch.testing.assert_close(sa[key], sb[key], rtol=0, atol=0)


@pytest.mark.parametrize("fmt", ["pt", "safetensors", "wrapped", "ddp", "network"])
def test_our_encoder_loads_every_layout(tmp_path, fmt):
    source = small(1)
    state = source.state_dict()
    path = tmp_path / f"w.{'safetensors' if fmt == 'safetensors' else 'pt'}"
    if fmt == "safetensors":
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        obj = {"pt": state, "wrapped": {"state_dict": state, "epoch": 3},
               "ddp": {f"module.{k}": v for k, v in state.items()},
               "network": {f"encoder.{k}": v for k, v in state.items()}}[fmt]
        torch.save(obj, path)
    target = small(2)
    assert load_encoder_weights(target, path) is target
    assert_same(target, source)


def test_mismatches_name_the_first_key_and_shapes(tmp_path):
    path = tmp_path / "w.pt"
    torch.save(small(1, widths=(8, 32)).state_dict(), path)  # last block wider
    with pytest.raises(PretrainedWeightsError) as info:
        load_encoder_weights(small(2), path)
    assert "'features.3.weight'" in str(info.value)
    assert "[32, 8, 3, 3]" in str(info.value) and "[16, 8, 3, 3]" in str(info.value)

    state = small(1).state_dict()
    del state["features.1.running_mean"]
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, path)
    with pytest.raises(PretrainedWeightsError,
                       match=r"missing from the file, first 'features.1.running_mean'.*"
                             r"unexpected key\(s\) in the file, first 'extra.weight'"):
        load_encoder_weights(small(2), path)


def test_unreadable_unsafe_and_missing_files_are_refused(tmp_path):
    with pytest.raises(PretrainedWeightsError, match="no file"):
        load_encoder_weights(small(0), tmp_path / "absent.pt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(PretrainedWeightsError, match="cannot read"):
        load_encoder_weights(small(0), garbage)
    bad_st = tmp_path / "bad.safetensors"
    bad_st.write_bytes(b"\x00" * 16)
    with pytest.raises(PretrainedWeightsError, match="safetensors"):
        load_encoder_weights(small(0), bad_st)
    unsafe = tmp_path / "unsafe.pt"
    torch.save({"weight": torch.zeros(1), "obj": torch.nn.ReLU()}, unsafe)  # a pickled module
    with pytest.raises(PretrainedWeightsError, match="weights_only=True"):
        load_encoder_weights(small(0), unsafe)


def test_timm_state_dict_with_its_classifier_loads(tmp_path):
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    ref = timm.create_model("resnet18", pretrained=False, num_classes=7, in_chans=3)
    path = tmp_path / "resnet18.safetensors"
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(path))
    assert "fc.weight" in ref.state_dict()
    enc = create_model("timm/resnet18", in_channels=3, image_size=32)
    load_encoder_weights(enc, path)  # fc.* is timm's classifier: dropped
    images = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(enc.eval()(images), ref.eval().forward_head(
            ref.forward_features(images), pre_logits=True), rtol=0, atol=0)
    wrong = create_model("timm/resnet18", in_channels=1, image_size=32)  # 1-channel stem
    with pytest.raises(PretrainedWeightsError, match=r"'conv1.weight' has shape \[64, 3, 7, 7\]"):
        load_encoder_weights(wrong, path)


FAST = ["optim.epochs=1", "optim.warmup_epochs=0", "optim.batch_size=32",
        "train.max_steps_per_epoch=1", "train.progress=off", "train.tau2_every=0",
        "linear.run_after_pretrain=false", "knn.enabled=false", "cluster.enabled=false",
        "model.kwargs={widths: [8, 16]}", "data.num_workers=0", "data.per_class=5"]


def _cfg(tmp_path, *overrides, name="run"):
    data = read_yaml(_resolve("digits"))
    data["output_dir"] = str(tmp_path / name)
    return config_from_dict(apply_overrides(data, [*FAST, *overrides]))


def test_pretrain_starts_from_the_file_and_checkpoints_do_not_need_it(tmp_path):
    source = small(5)
    path = tmp_path / "init.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    # a learning rate of ~0: the trained weights are the file's (a random init is far off)
    pretrain(_cfg(tmp_path, f"model.pretrained={path}", "optim.lr=1e-9"))
    state = load_checkpoint(tmp_path / "run")
    assert state["config"]["model"]["pretrained"] == str(path)
    assert "pretrained" not in state["network"]  # the spec rebuilds without the file
    torch.testing.assert_close(state["model"]["encoder.features.0.weight"],
                               source.state_dict()["features.0.weight"], rtol=0, atol=1e-6)
    path.unlink()  # the checkpoint's weights win; the file is never read again
    encoder = load_encoder(tmp_path / "run")
    torch.testing.assert_close(encoder.state_dict()["features.0.weight"],
                               state["model"]["encoder.features.0.weight"], rtol=0, atol=0)


def test_pretrain_refuses_a_bad_file_before_creating_the_run(tmp_path):
    with pytest.raises(PretrainedWeightsError, match="no file"):
        pretrain(_cfg(tmp_path, f"model.pretrained={tmp_path / 'absent.pt'}"))
    assert not (tmp_path / "run").exists()
    path = tmp_path / "wide.pt"
    torch.save(small(1, widths=(8, 32)).state_dict(), path)
    with pytest.raises(PretrainedWeightsError, match=r"'features\.3\.weight' has shape"):
        pretrain(_cfg(tmp_path, f"model.pretrained={path}", name="run2"))
    assert not (tmp_path / "run2" / "checkpoints" / "last.pt").exists()
