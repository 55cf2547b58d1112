"""The linear probe on fixed features: a separable problem is learned perfectly and
reproducibly; accuracy and the confusion matrix are computed as defined; the saved classifier
round-trips through ``weights_only`` loading."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from varcon.evaluation.linear import (
    load_probe,
    probe_accuracy,
    save_probe,
    train_probe_on_features,
)
from varcon.runtime.config import LinearConfig


def blobs(num_classes: int = 4, per_class: int = 30, dim: int = 16, seed: int = 0
          ) -> tuple[torch.Tensor, torch.Tensor]:
    """Well separated Gaussian clusters: class c around 5 * e_c."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(num_classes).repeat_interleave(per_class)
    centres = 5.0 * torch.eye(num_classes, dim)
    feats = centres[labels] + 0.3 * torch.randn(len(labels), dim, generator=gen)
    return feats, labels


# few optimizer steps: tiny ops are slow when other processes load the CPU (thread wake-ups)
LC = LinearConfig(epochs=8, batch_size=60, lr=0.5, warmup_epochs=0, augment="eval")


def test_separable_features_are_learned_perfectly():
    feats, labels = blobs()
    probe = train_probe_on_features(feats, labels, 4, LC, seed=1)
    assert isinstance(probe, nn.Linear) and probe.weight.shape == (4, 16) and not probe.training
    test_f, test_y = blobs(seed=1)
    result = probe_accuracy(probe, test_f, test_y, 4)
    assert result["top1"] == 100.0 and result["top5"] == 100.0 and result["n_test"] == 120
    assert np.array_equal(result["confusion"], np.diag([30] * 4))


def test_probe_is_seeded():
    feats, labels = blobs()
    lc = LinearConfig(epochs=2, batch_size=60, lr=0.1, warmup_epochs=1)
    a = train_probe_on_features(feats, labels, 4, lc, seed=3)
    b = train_probe_on_features(feats, labels, 4, lc, seed=3)
    c = train_probe_on_features(feats, labels, 4, lc, seed=4)
    assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)
    assert not torch.equal(a.weight, c.weight)


def test_more_epochs_fit_better_on_noisy_labels():
    """The schedule is applied: a probe trained longer reaches a lower training loss."""
    feats, labels = blobs(num_classes=6, per_class=20, dim=8)
    labels = labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))]
    losses = []
    for epochs in (1, 15):
        lc = LinearConfig(epochs=epochs, batch_size=120, lr=0.5, warmup_epochs=0)
        probe = train_probe_on_features(feats, labels, 6, lc, seed=0)
        with torch.no_grad():
            losses.append(float(nn.functional.cross_entropy(probe(feats), labels)))
    assert losses[1] < losses[0]


def test_accuracy_and_confusion_by_hand():
    """Identity classifier on one-hot-like 'features': predictions are the argmax rows."""
    probe = nn.Linear(6, 6)
    with torch.no_grad():
        probe.weight.copy_(torch.eye(6))
        probe.bias.zero_()
    # logits per row, predicted top-1 and whether the label is in the top 5
    feats = torch.tensor([
        [9, 8, 7, 6, 5, 0],  # label 0: top-1 right
        [9, 8, 7, 6, 5, 0],  # label 4: top-5 right (5th)
        [9, 8, 7, 6, 5, 0],  # label 5: wrong in both
        [0, 1, 2, 3, 4, 9],  # label 5: right
    ], dtype=torch.float32)
    labels = torch.tensor([0, 4, 5, 5])
    result = probe_accuracy(probe, feats, labels, 6)
    assert result["top1"] == 50.0 and result["top5"] == 75.0 and result["n_test"] == 4
    expected = np.zeros((6, 6), np.int64)
    expected[0, 0] = expected[4, 0] = expected[5, 0] = expected[5, 5] = 1
    assert result["confusion"].dtype == np.int64
    assert np.array_equal(result["confusion"], expected)  # rows true, columns predicted


def test_top5_with_fewer_than_five_classes_is_everything():
    probe = nn.Linear(3, 3)
    feats = torch.randn(10, 3)
    labels = torch.randint(0, 3, (10,))
    assert probe_accuracy(probe, feats, labels, 3)["top5"] == 100.0


def _fake_session(out_dir: Path) -> SimpleNamespace:
    return SimpleNamespace(
        out_dir=out_dir, num_classes=3, class_names=["a", "b", "c"],
        checkpoint="/runs/x/checkpoints/last.pt",
        context=lambda features="encoder": {"eval_dataset": "tree"},
    )


def test_saved_probe_round_trips_with_weights_only(tmp_path):
    feats, labels = blobs(num_classes=3, dim=5)
    probe = train_probe_on_features(feats, labels, 3, LC)
    save_probe(_fake_session(tmp_path), probe)
    path = tmp_path / "linear_probe.pt"
    raw = torch.load(path, map_location="cpu", weights_only=True)  # plain data only
    assert raw["format"] == "varcon-probe" and raw["class_names"] == ["a", "b", "c"]
    assert raw["weight"].shape == (3, 5) and raw["bias"].shape == (3,)
    loaded, state = load_probe(path)
    assert not loaded.training and state["eval_dataset"] == "tree"
    assert torch.equal(loaded.weight, probe.weight) and torch.equal(loaded.bias, probe.bias)
    torch.testing.assert_close(loaded(feats), probe(feats))
    assert not list(tmp_path.glob(".*tmp*"))


def test_load_probe_refuses_other_files(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({"weight": torch.zeros(2, 2), "bias": torch.zeros(2)}, path)
    with pytest.raises(ValueError, match="not a linear probe saved by `varcon linear`"):
        load_probe(path)
