"""EvalSession: every split is encoded once per encoder and feature kind, however many
protocols read it; with ``eval.cache_features=true`` the float16 features are kept in
``<output>/features/`` and a later command skips the encoder, unless the checkpoint or the
data settings changed.

The encoder is spied on through ``EvalSession.encode_dataset`` (the one place a split's
images go through the network); one tiny digits run is pre-trained for the module.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from varcon.cli.main import main
from varcon.evaluation.session import (
    EvalSession,
    compact_float,
    dataset_label,
    eval_session,
)
from varcon.runtime.checkpoint import eval_dir_of
from varcon.runtime.config import config_from_dict

RUN_ARGS = [
    "optim.epochs=1", "optim.warmup_epochs=0", "optim.batch_size=64",
    "train.max_steps_per_epoch=2", "train.progress=off", "train.tau2_every=0",
    "data.per_class=20", "linear.epochs=1", "linear.augment=eval", "knn.k=[3]",
    "cluster.algorithms=[agglomerative_ward]",
]
N_TRAIN, N_TEST = 10 * 20, 450  # digits: 20 training images per class, the whole test split
CACHE = ["eval.cache_features=true", "train.progress=off"]


class EncodeSpy:
    """Wraps ``EvalSession.encode_dataset``: records the size of every dataset encoded."""

    def __init__(self, mp: pytest.MonkeyPatch) -> None:
        self.calls: list[tuple[str, int]] = []
        real = EvalSession.encode_dataset

        def spy(session, dataset, kind="encoder", **kwargs):
            self.calls.append((kwargs.get("desc", ""), len(dataset)))
            return real(session, dataset, kind, **kwargs)

        mp.setattr(EvalSession, "encode_dataset", spy)

    def take(self) -> list[tuple[str, int]]:
        calls, self.calls = sorted(self.calls), []
        return calls


@pytest.fixture(scope="module")
def pretrain_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list]:
    """A tiny digits run whose end-of-training evaluation (kNN, clustering, linear probe on
    ``linear.augment=eval``) ran under the spy; returns the run and the encodings made."""
    run = tmp_path_factory.mktemp("session") / "run"
    with pytest.MonkeyPatch.context() as mp:
        spy = EncodeSpy(mp)
        assert main(["pretrain", "--output-dir", str(run), *RUN_ARGS]) == 0
    return run, spy.take()


@pytest.fixture
def run(pretrain_run: tuple[Path, list]) -> Path:
    return pretrain_run[0]


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> EncodeSpy:
    return EncodeSpy(monkeypatch)


def knn_top1(out_dir: Path) -> float:
    return json.loads((out_dir / "knn.json").read_text())["results"]["top1"]["3"]


# ---------------------------------------------------------------- one encoding per split


def test_pretrain_end_encodes_train_and_test_once_each(pretrain_run):
    run, calls = pretrain_run
    # kNN, clustering and the probe all ran ...
    for name in ("knn", "cluster", "linear"):
        assert (run / "eval" / f"{name}.json").is_file(), name
    # ... on one encoding of each split.
    assert calls == [("features test/encoder", N_TEST), ("features train/encoder", N_TRAIN)]
    assert not (run / "eval" / "features").exists()  # no cache unless asked


def test_session_features_are_memoised_and_match_the_encoder(run, tmp_path, spy):
    with eval_session(run, ["train.progress=off"], tmp_path / "out") as session:
        feats, labels = session.features("test")
        again, _ = session.features("test")
        assert again is feats
        head, head_labels = session.features("test", "head")
        assert spy.take() == [("features test/encoder", N_TEST), ("features test/head", N_TEST)]
        assert feats.dtype == torch.float32 and feats.shape == (N_TEST, session.net.out_dim)
        assert labels.dtype == torch.int64 and torch.equal(labels, head_labels)
        assert head.shape == (N_TEST, 128)
        assert torch.allclose(head.norm(dim=1), torch.ones(N_TEST), atol=1e-4)  # unit norm
        # Row i is the encoder applied to test image i with the training normalisation.
        image, label = session.test_set()[7]
        x = session.eval_transform()(image)[None]
        with torch.no_grad():
            expected = session.net.eval().encode(x)[0]
        assert int(labels[7]) == label
        torch.testing.assert_close(feats[7], expected, rtol=1e-4, atol=1e-5)
        with pytest.raises(ValueError, match="'encoder' or 'head'"):
            session.features("test", "projection")


def test_protocols_in_one_session_share_the_features(run, tmp_path, spy):
    from varcon.evaluation.linear import run_linear
    from varcon.evaluation.protocols import run_cluster, run_fewshot, run_knn

    with eval_session(run, ["train.progress=off", "fewshot.episodes=5", "fewshot.shots=[1]",
                            "fewshot.classifiers=[ncm]"], tmp_path / "out") as session:
        session.prepare_output()
        for protocol in (run_knn, run_cluster, run_fewshot, run_linear):
            protocol(session)
    assert spy.take() == [("features test/encoder", N_TEST), ("features train/encoder", N_TRAIN)]
    for name in ("knn", "cluster", "fewshot", "linear"):
        assert (tmp_path / "out" / f"{name}.json").is_file()


# ------------------------------------------------------------------------------ the cache


def test_cache_is_written_and_read_by_the_next_command(run, tmp_path, spy, capsys):
    out = tmp_path / "out"
    assert main(["knn", "--checkpoint", str(run), "--output-dir", str(out), *CACHE]) == 0
    assert spy.take() == [("features test/encoder", N_TEST), ("features train/encoder", N_TRAIN)]
    for split, n in (("train", N_TRAIN), ("test", N_TEST)):
        with np.load(out / "features" / f"{split}_encoder.npz") as npz:
            assert npz["features"].dtype == np.float16 and npz["features"].shape[0] == n
            assert npz["labels"].dtype == np.int64 and npz["labels"].shape == (n,)
    first = knn_top1(out)

    # Later commands read the cache: the encoder is not called at all.
    for command in ("knn", "cluster", "linear"):
        assert main([command, "--checkpoint", str(run), "--output-dir", str(out), *CACHE,
                     "linear.epochs=1"]) == 0, command
        assert spy.take() == [], command
    assert knn_top1(out) == first
    capsys.readouterr()

    # The cached float16 features are the encoder's, to float16 precision.
    with eval_session(run, ["train.progress=off"], tmp_path / "fresh") as session:
        exact, labels = session.features("test")
    with np.load(out / "features" / "test_encoder.npz") as npz:
        np.testing.assert_array_equal(npz["labels"], labels.numpy())
        np.testing.assert_allclose(npz["features"].astype(np.float32), exact.numpy(),
                                   rtol=1e-3, atol=1e-3)


def test_cache_is_invalidated_by_another_checkpoint_or_other_data(run, tmp_path, spy, capsys):
    out = tmp_path / "out"
    assert main(["knn", "--checkpoint", str(run), "--output-dir", str(out), *CACHE]) == 0
    spy.take()

    # Another checkpoint file (same weights, other path): both splits are encoded again.
    other = tmp_path / "copy.pt"
    shutil.copy(run / "checkpoints" / "last.pt", other)
    assert main(["knn", "--checkpoint", str(other), "--output-dir", str(out), *CACHE]) == 0
    assert spy.take() == [("features test/encoder", N_TEST), ("features train/encoder", N_TRAIN)]

    # A checkpoint rewritten in place (training resumed): encoded again.
    assert main(["knn", "--checkpoint", str(other), "--output-dir", str(out), *CACHE]) == 0
    assert spy.take() == []
    torch.save(torch.load(other, weights_only=True), other)
    assert main(["knn", "--checkpoint", str(other), "--output-dir", str(out), *CACHE]) == 0
    assert len(spy.take()) == 2

    # Another training subset: only the training split changes, the test split is reused.
    assert main(["knn", "--checkpoint", str(other), "--output-dir", str(out), *CACHE,
                 "data.per_class=5"]) == 0
    assert spy.take() == [("features train/encoder", 10 * 5)]

    # Other classes: both splits change.
    assert main(["knn", "--checkpoint", str(other), "--output-dir", str(out), *CACHE,
                 "data.classes=[0,1,2]"]) == 0
    calls = spy.take()
    assert [c[0] for c in calls] == ["features test/encoder", "features train/encoder"]
    assert calls[0][1] == 45 + 46 + 44  # digits test images of classes 0, 1, 2
    capsys.readouterr()


def test_unreadable_cache_is_re_encoded(run, tmp_path, spy):
    out = tmp_path / "out"
    (out / "features").mkdir(parents=True)
    (out / "features" / "test_encoder.npz").write_bytes(b"not an npz file")
    assert main(["cluster", "--checkpoint", str(run), "--output-dir", str(out), *CACHE]) == 0
    assert spy.take() == [("features test/encoder", N_TEST)]
    with np.load(out / "features" / "test_encoder.npz") as npz:  # rewritten, readable
        assert npz["features"].shape[0] == N_TEST
    assert not list((out / "features").glob(".*tmp*"))


# -------------------------------------------------------------------------------- helpers


def test_compact_float_keeps_values_that_float16_cannot_hold():
    small = np.array([[0.5, -3.0]], dtype=np.float32)
    assert compact_float(small).dtype == np.float16
    large = np.array([[1e5, 1.0]], dtype=np.float32)  # beyond float16's 65504
    kept = compact_float(large)
    assert kept.dtype == np.float32 and np.isfinite(kept).all()
    assert compact_float(np.zeros((0, 4), np.float32)).dtype == np.float16


def test_eval_dir_of(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    assert eval_dir_of(run) == run / "eval"
    assert eval_dir_of(run / "checkpoints" / "last.pt") == run / "eval"
    assert eval_dir_of(tmp_path / "model.pt") == tmp_path / "eval"


def test_dataset_label():
    assert dataset_label(config_from_dict({})) == "digits"
    tree = config_from_dict({"data": {"dataset": "imagefolder", "root": "/data/flowers/"}})
    assert dataset_label(tree) == "flowers"
    subset = config_from_dict({"data": {"exclude_classes": [9]}})
    assert dataset_label(subset) == "digits-subset"
