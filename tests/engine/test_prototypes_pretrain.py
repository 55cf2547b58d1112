"""The engine with ``loss.prototypes=ema``: the class prototypes live on the loss module,
are saved in checkpoints ("loss" entry) and restored bit-exactly on ``--resume``."""

import shutil

import pytest
import torch

from varcon.engine.pretrain import pretrain
from varcon.losses import VarConLoss
from varcon.runtime.checkpoint import load_checkpoint
from varcon.runtime.config import ConfigError, apply_overrides, config_from_dict, read_yaml
from varcon.runtime.config import resolve_config_path as _resolve

# Batches of 6 images (12 views) of the 10 digits: most batches miss some classes, whose
# prototypes then enter the softmax.
FAST = [
    "optim.epochs=2", "optim.warmup_epochs=1", "optim.batch_size=6",
    "train.max_steps_per_epoch=5", "train.save_every=1", "train.progress=off",
    "linear.run_after_pretrain=false", "data.num_workers=0",
]


def digits_config(tmp_path, *overrides, name="run"):
    data = read_yaml(_resolve("digits"))
    data["output_dir"] = str(tmp_path / name)
    return config_from_dict(apply_overrides(data, [*FAST, *overrides]))


def _state(run, name="last.pt"):
    return torch.load(run / "checkpoints" / name, weights_only=True)


def _same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_resume_restores_prototypes_bit_exactly(tmp_path, capsys):
    ema = ["loss.prototypes=ema", "loss.momentum=0.8"]
    pretrain(digits_config(tmp_path, *ema, name="a"))
    first, last = _state(tmp_path / "a", "epoch_1.pt"), _state(tmp_path / "a")
    protos, seen = last["loss"]["class_prototypes"], last["loss"]["class_seen"]
    assert protos.shape == (10, 128) and seen.dtype == torch.bool
    assert int(seen.sum()) >= 6  # classes seen ...
    torch.testing.assert_close(protos[seen].norm(dim=1), torch.ones(int(seen.sum())))
    assert not torch.equal(first["loss"]["class_prototypes"], protos)  # ... and updated
    # the checkpoint loads into the loss the engine builds
    loss_fn = VarConLoss(num_classes=10, prototypes="ema")
    loss_fn.load_state_dict(load_checkpoint(tmp_path / "a")["loss"])

    # Resume from the end of epoch 1: the same weights and prototypes as the uninterrupted run.
    shutil.copytree(tmp_path / "a", tmp_path / "c")
    ckpts = tmp_path / "c" / "checkpoints"
    shutil.copy(ckpts / "epoch_1.pt", ckpts / "last.pt")
    cfg = digits_config(tmp_path, *ema, name="c")
    cfg.resume = str(tmp_path / "c")
    pretrain(cfg)
    resumed = _state(tmp_path / "c")
    assert _same(resumed["model"], last["model"])
    assert _same(resumed["loss"], last["loss"])

    # A checkpoint without the "loss" entry (written before it existed) still resumes:
    # the prototypes start empty, so training takes another path.
    shutil.copytree(tmp_path / "a", tmp_path / "old")
    ckpts = tmp_path / "old" / "checkpoints"
    old = _state(tmp_path / "a", "epoch_1.pt")
    del old["loss"]
    torch.save(old, ckpts / "last.pt")
    cfg = digits_config(tmp_path, *ema, name="old")
    cfg.resume = str(tmp_path / "old")
    capsys.readouterr()
    pretrain(cfg)
    assert "holds no loss state" in capsys.readouterr().out
    again = _state(tmp_path / "old")
    assert not _same(again["loss"], last["loss"]) and not _same(again["model"], last["model"])


def test_batch_mode_checkpoints_have_no_loss_entry(tmp_path):
    pretrain(digits_config(tmp_path, "optim.epochs=1", "optim.warmup_epochs=0",
                           "train.max_steps_per_epoch=2"))
    assert "loss" not in _state(tmp_path / "run")


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        (["method=supcon", "loss.prototypes=ema"], "set loss.prototypes=batch"),
        (["method=ce", "data.views=1", "loss.prototypes=ema"], "method=varcon only"),
        (["loss.prototypes=bank"], r"loss.prototypes: must be one of batch, ema"),
        (["loss.prototypes=ema", "loss.momentum=1.0"], r"loss.momentum: must be .*\[0, 1\)"),
        (["loss.momentum=-0.5"], "loss.momentum"),
    ],
)
def test_bad_prototype_settings_rejected_before_work(tmp_path, overrides, match):
    with pytest.raises(ConfigError, match=match):
        digits_config(tmp_path, *overrides)
    assert not (tmp_path / "run").exists()


def test_a_skipped_step_leaves_the_prototypes_as_they_were(tmp_path, monkeypatch):
    """A non-finite loss skips the step; the prototypes its batch updated are restored, as
    the BatchNorm running statistics are."""
    import varcon.engine.state as state_mod

    real = state_mod.build_loss
    before_call: list[torch.Tensor] = []

    class NaNAtFourthCall(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, features, labels, return_stats=False):
            before_call.append(self.inner.class_prototypes.detach().clone())
            loss, stats = self.inner(features, labels, return_stats=True)
            if len(before_call) == 4:
                loss = loss * float("nan")
            return loss, stats

    monkeypatch.setattr(state_mod, "build_loss", lambda cfg, n: NaNAtFourthCall(real(cfg, n)))
    pretrain(digits_config(tmp_path, "loss.prototypes=ema"))
    assert len(before_call) == 10
    assert not torch.equal(before_call[2], before_call[3])  # a good step updates them
    assert torch.equal(before_call[3], before_call[4])  # the skipped one (call 4) does not
