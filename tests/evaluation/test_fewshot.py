"""Few-shot episodes on frozen features: sampling, NCM / logistic regression, statistics, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from varcon.evaluation import fewshot_evaluate, sample_episodes

KEYS = {"n_way", "k_shot", "n_query", "episodes", "classifier", "mean", "ci95"}


def _separated(num_classes: int, per_class: int, dim: int, seed: int = 0,
               ) -> tuple[torch.Tensor, np.ndarray]:
    """Tight blobs on orthogonal axes (offset so that centring keeps them apart)."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(num_classes), per_class)
    feats = 10.0 * np.eye(dim)[labels] + 3.0 + rng.normal(0, 0.1, (len(labels), dim))
    perm = rng.permutation(len(labels))
    return torch.from_numpy(feats[perm]).float(), labels[perm]


def _random(num_classes: int, per_class: int, dim: int, seed: int = 0,
            ) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(num_classes * per_class, dim)),
            np.repeat(np.arange(num_classes), per_class))


def _structured(num_classes: int, per_class: int, dim: int, seed: int = 0,
                ) -> tuple[np.ndarray, np.ndarray]:
    """Overlapping Gaussian classes: accuracy well between chance and 100%."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(num_classes), per_class)
    centres = rng.normal(size=(num_classes, dim))
    # the common offset makes centring (CL2N) change the result
    return centres[labels] + rng.normal(size=(len(labels), dim)) + 1.0, labels


# --- sample_episodes ---------------------------------------------------------------------------


def test_episodes_are_valid_and_disjoint() -> None:
    _, labels = _random(8, 20, 2)
    ep = sample_episodes(labels, n_way=5, k_shot=3, n_query=4, episodes=50, seed=1)
    assert ep.classes.shape == (50, 5)
    assert ep.support.shape == (50, 5, 3) and ep.query.shape == (50, 5, 4)
    for e in range(50):
        assert len(set(ep.classes[e])) == 5
        rows = np.concatenate([ep.support[e].ravel(), ep.query[e].ravel()])
        assert len(set(rows.tolist())) == rows.size  # no row used twice
        for w in range(5):
            assert (labels[ep.support[e, w]] == ep.classes[e, w]).all()
            assert (labels[ep.query[e, w]] == ep.classes[e, w]).all()


def test_episodes_are_uniform_over_classes_and_rows() -> None:
    _, labels = _random(10, 6, 2)
    ep = sample_episodes(labels, n_way=5, k_shot=1, n_query=2, episodes=2000, seed=0)
    # each class is in an episode with probability 1/2: 1000 +- 22 (sd); 5 sd allowed
    counts = np.bincount(ep.classes.ravel(), minlength=10)
    assert np.all(np.abs(counts - 1000) < 112), counts
    # way 0 holds each class with probability 1/10: 200 +- 13.4
    assert np.all(np.abs(np.bincount(ep.classes[:, 0], minlength=10) - 200) < 67)
    # a given row of class c is the support with probability 1/6 each time c is drawn
    sup = np.bincount(ep.support.ravel(), minlength=60)
    drawn = counts[labels]
    assert np.all(np.abs(sup - drawn / 6) < 5 * np.sqrt(drawn * (1 / 6) * (5 / 6))), sup


def test_classes_restrict_episodes_and_small_classes_are_skipped() -> None:
    _, labels = _random(10, 25, 2)
    labels = labels.copy()
    labels[labels == 4] = 9  # class 9 gets 50 rows, class 4 none
    labels[np.flatnonzero(labels == 7)[:20]] = 8  # class 7 keeps 5 rows: too few for 1 + 15
    allowed = [1, 3, 5, 7, 8, 9]
    ep = sample_episodes(torch.from_numpy(labels), n_way=5, k_shot=1, n_query=15, episodes=200,
                         classes=allowed, seed=0)
    assert set(np.unique(ep.classes).tolist()) == {1, 3, 5, 8, 9}  # 7 is ineligible
    all_used = sample_episodes(labels, n_way=5, k_shot=1, n_query=15, episodes=200)
    assert set(np.unique(all_used.classes).tolist()) == {0, 1, 2, 3, 5, 6, 8, 9}
    with pytest.raises(ValueError, match=r"\[4, 11\]"):
        sample_episodes(labels, n_way=2, k_shot=1, n_query=1, episodes=5, classes=[1, 4, 11])


def test_episodes_seeded() -> None:
    _, labels = _random(10, 30, 2)
    kw = {"n_way": 5, "k_shot": 5, "n_query": 10, "episodes": 40}
    a = sample_episodes(labels, seed=3, **kw)
    b = sample_episodes(labels, seed=3, **kw)
    c = sample_episodes(labels, seed=4, **kw)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a.classes, c.classes)
    assert not np.array_equal(a.support, c.support)


def test_n_way_above_eligible_classes() -> None:
    _, labels = _random(6, 10, 2)
    labels = labels.copy()
    labels[:15] = 0  # class 0 has 15 + ..., class 1 only 5
    counts = np.bincount(labels)
    eligible = int((counts >= 12).sum())
    with pytest.raises(ValueError, match=f"only {eligible} of the 6") as err:
        sample_episodes(labels, n_way=6, k_shot=2, n_query=10, episodes=5)
    assert "fewer shots" in str(err.value) and "fewer ways" in str(err.value)
    with pytest.raises(ValueError, match="only"):
        fewshot_evaluate(torch.randn(60, 3), labels, n_way=5, shots=(1, 5), n_query=10,
                         episodes=5)


# --- fewshot_evaluate --------------------------------------------------------------------------


@pytest.mark.parametrize("center", [False, True])
def test_perfect_separation_gives_100(center: bool) -> None:
    feats, labels = _separated(7, 25, 9)
    out = fewshot_evaluate(feats, labels, n_way=5, shots=(1, 5), n_query=10, episodes=20,
                           center=center)
    assert [(r["k_shot"], r["classifier"]) for r in out] == [
        (1, "ncm"), (1, "logreg"), (5, "ncm"), (5, "logreg")]
    for r in out:
        assert set(r) == KEYS
        assert r["n_way"] == 5 and r["n_query"] == 10 and r["episodes"] == 20
        assert r["mean"] == 100.0 and r["ci95"] == 0.0
        assert isinstance(r["mean"], float) and isinstance(r["ci95"], float)


def _ncm_reference(feats: np.ndarray, labels: np.ndarray, ep: object, center: bool,
                   ) -> np.ndarray:
    """Per-episode NCM accuracy, one episode and one query at a time."""
    x = feats - feats.mean(0) if center else feats
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    accs = []
    for e in range(len(ep.classes)):
        protos = np.stack([x[ep.support[e, w]].mean(0) for w in range(ep.classes.shape[1])])
        protos /= np.linalg.norm(protos, axis=1, keepdims=True)
        right = [int(np.argmax(protos @ x[i]) == w)
                 for w in range(ep.classes.shape[1]) for i in ep.query[e, w]]
        accs.append(100.0 * np.mean(right))
    return np.array(accs)


@pytest.mark.parametrize(("k_shot", "center"), [(1, False), (3, False), (3, True)])
def test_ncm_matches_per_episode_reference(k_shot: int, center: bool) -> None:
    feats, labels = _structured(12, 30, 6)
    ep = sample_episodes(labels, n_way=5, k_shot=k_shot, n_query=7, episodes=60, seed=2)
    ref = _ncm_reference(feats, labels, ep, center)
    assert 30 < ref.mean() < 95  # informative: neither chance nor perfect
    if center:  # the centred path really differs from the plain one on these features
        assert not np.array_equal(ref, _ncm_reference(feats, labels, ep, False))
    (out,) = fewshot_evaluate(feats, labels, n_way=5, shots=(k_shot,), n_query=7, episodes=60,
                              classifiers=("ncm",), center=center, seed=2)
    assert out["mean"] == pytest.approx(ref.mean(), abs=1e-9)
    assert out["ci95"] == pytest.approx(1.96 * ref.std(ddof=1) / np.sqrt(60), abs=1e-9)


def test_logreg_is_informative_and_close_to_ncm() -> None:
    feats, labels = _structured(12, 30, 6)
    ncm, lr = fewshot_evaluate(feats, labels, n_way=5, shots=(5,), n_query=10, episodes=40,
                               seed=1)
    assert lr["classifier"] == "logreg" and ncm["classifier"] == "ncm"
    assert 40 < lr["mean"] < 99
    assert abs(lr["mean"] - ncm["mean"]) < 15


def test_random_features_give_chance() -> None:
    """Features independent of labels: by symmetry each query is right with probability
    1/n_way = 20%, and episodes drawn from a fixed pool are i.i.d. given the pool. The pool's
    chance class structure is negligible (2000 rows per class in 8 dims: class means differ by
    ~sqrt(8/2000) = 0.06 against a per-row spread of sqrt(8) = 2.8), so the mean over episodes
    is 20% within its own standard error; 4 standard errors are allowed (two-sided p = 6e-5).
    """
    feats, labels = _random(5, 2000, 8, seed=0)
    out = fewshot_evaluate(feats, labels, n_way=5, shots=(1,), n_query=15, episodes=300,
                           seed=0)
    for r in out:
        se = r["ci95"] / 1.96
        assert 0.1 < se < 1.5, r  # ~ sqrt(0.16 / 75) * 100 / sqrt(300) = 0.27 at the least
        assert abs(r["mean"] - 20.0) < 4 * se, r


def test_ci95_shrinks_as_one_over_sqrt_episodes() -> None:
    feats, labels = _random(20, 40, 8, seed=1)
    kw = {"n_way": 5, "shots": (1,), "n_query": 5, "classifiers": ("ncm",)}
    (small,) = fewshot_evaluate(feats, labels, episodes=100, **kw)
    (large,) = fewshot_evaluate(feats, labels, episodes=1600, **kw)
    # std is the same statistic in both; sqrt(1600 / 100) = 4
    assert 2.5 < small["ci95"] / large["ci95"] < 6.0


def test_seed_reproducible_and_independent_of_other_shots() -> None:
    feats, labels = _structured(10, 25, 5)
    kw = {"n_way": 4, "n_query": 5, "episodes": 15}
    a = fewshot_evaluate(feats, labels, shots=(1, 5), seed=7, **kw)
    assert a == fewshot_evaluate(feats, labels, shots=(1, 5), seed=7, **kw)
    # the 5-shot episodes do not depend on which other shots are evaluated
    assert a[2:] == fewshot_evaluate(feats, labels, shots=(5,), seed=7, **kw)
    assert fewshot_evaluate(feats, labels, shots=(1,), seed=8, **kw) != a[:2]


def test_classifiers_see_the_same_episodes(monkeypatch: pytest.MonkeyPatch) -> None:
    from varcon.evaluation import fewshot

    seen: dict[str, list[object]] = {"ncm": [], "logreg": []}
    for name in seen:
        real = getattr(fewshot, f"_{name}_accuracies")

        def spy(x: torch.Tensor, ep: object, _real: object = real, _name: str = name) -> object:
            seen[_name].append(ep)
            return _real(x, ep)

        monkeypatch.setattr(fewshot, f"_{name}_accuracies", spy)
    feats, labels = _structured(10, 25, 5)
    fewshot_evaluate(feats, labels, n_way=4, shots=(1, 3), n_query=5, episodes=6, seed=2)
    assert len(seen["ncm"]) == len(seen["logreg"]) == 2
    for ep_ncm, ep_lr, k in zip(seen["ncm"], seen["logreg"], (1, 3), strict=True):
        expected = sample_episodes(labels, n_way=4, k_shot=k, n_query=5, episodes=6, seed=2)
        for a, b, c in zip(ep_ncm, ep_lr, expected, strict=True):
            np.testing.assert_array_equal(a, b)
            np.testing.assert_array_equal(a, c)


def test_classes_argument() -> None:
    feats, labels = _separated(8, 20, 10)
    out = fewshot_evaluate(feats, labels, n_way=3, shots=(2,), n_query=5, episodes=10,
                           classes=[0, 2, 5], classifiers=("ncm",))
    assert out[0]["mean"] == 100.0
    with pytest.raises(ValueError, match=r"\[9\]"):
        fewshot_evaluate(feats, labels, classes=[0, 2, 9])
    with pytest.raises(ValueError, match="only 3 of the 3"):
        fewshot_evaluate(feats, labels, n_way=4, shots=(1,), n_query=5, classes=[0, 2, 5])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"classifiers": ("ncm", "svm")}, r"svm.*\['ncm', 'logreg'\]"),
        ({"classifiers": ()}, "choose from"),
        ({"shots": ()}, "at least one"),
        ({"n_way": 1}, "n_way"),
        ({"episodes": 1}, "episodes"),
        ({"n_query": 0}, "n_query"),
        ({"shots": (0,)}, "k_shot"),
    ],
)
def test_invalid_arguments(kwargs: dict[str, object], match: str) -> None:
    feats, labels = _separated(6, 20, 8)
    with pytest.raises(ValueError, match=match):
        fewshot_evaluate(feats, labels, **{"episodes": 4, **kwargs})


def test_shape_mismatch() -> None:
    with pytest.raises(ValueError, match="matching"):
        fewshot_evaluate(torch.randn(10, 3), np.zeros(9, dtype=int))
