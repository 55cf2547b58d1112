"""Config behaviour added with the evaluation suite: numbers written like ``5e-4``, a warm-up
error that says what to set, ``model.kwargs`` checked against the encoder's factory, and the
eval / knn / cluster / fewshot / robustness sections."""

from __future__ import annotations

import pytest

from varcon.runtime.config import (
    ConfigError,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    load_config,
    read_yaml,
    save_config,
)


def problems(data: dict) -> list[str]:
    with pytest.raises(ConfigError) as info:
        config_from_dict(data)
    return info.value.problems


def test_exponent_numbers_in_overrides_and_yaml(tmp_path):
    cfg = load_config(None, ["optim.weight_decay=5e-4", "optim.lr=1E-1", "linear.lr=+2e0"])
    assert cfg.optim.weight_decay == 0.0005 and isinstance(cfg.optim.weight_decay, float)
    assert cfg.optim.lr == 0.1 and cfg.linear.lr == 2.0
    path = tmp_path / "c.yaml"
    path.write_text("optim:\n  weight_decay: 5e-4\n  lr: 3E-2\nloss:\n  epsilon: -1e-3\n")
    data = read_yaml(path)
    assert data["optim"] == {"weight_decay": 0.0005, "lr": 0.03}
    assert data["loss"]["epsilon"] == -0.001
    cfg = load_config(path, ["loss.epsilon=1e-2"])
    assert cfg.optim.weight_decay == 0.0005 and cfg.loss.epsilon == 0.01


def test_strings_that_only_look_like_numbers_stay_strings():
    data = apply_overrides({}, ["name=1e5run", "data.root=/data/5e-4", "name2=e5"])
    assert data["name"] == "1e5run" and data["data"]["root"] == "/data/5e-4"
    assert data["name2"] == "e5"


def test_saved_config_reads_back_equal(tmp_path):
    cfg = load_config(None, ["optim.weight_decay=5e-4", "knn.k=7", "model.kwargs={}"])
    save_config(cfg, tmp_path / "config.yaml")
    assert config_to_dict(load_config(tmp_path / "config.yaml")) == config_to_dict(cfg)


def test_short_training_names_the_warmup_to_set():
    with pytest.raises(ConfigError) as info:  # both chosen: not fitted (tests/runtime/
        load_config(None, ["optim.epochs=3", "optim.warmup_epochs=5"])  # test_warmup_fit.py)
    (problem,) = info.value.problems
    assert "optim.warmup_epochs" in problem and "optim.warmup_epochs=2" in problem
    assert "optim.epochs=3" in problem
    assert load_config(None, ["optim.epochs=3", "optim.warmup_epochs=2"]).optim.epochs == 3
    (problem,) = problems({"optim": {"epochs": 1, "warmup_epochs": 10}})
    assert "optim.warmup_epochs=0" in problem
    (problem,) = problems({"linear": {"epochs": 2, "warmup_epochs": 5}})
    assert "linear.warmup_epochs=1" in problem


def test_model_kwargs_are_checked_against_the_factory():
    cfg = config_from_dict({"model": {"encoder": "resnet18", "kwargs": {"width": 16}}})
    assert cfg.model.kwargs == {"width": 16}
    cfg = load_config(None, ["model.encoder=resnet18", "model.kwargs={width: 16}"])
    assert cfg.model.kwargs == {"width": 16}
    (problem,) = problems({"model": {"encoder": "resnet18", "kwargs": {"widht": 16}}})
    assert "widht" in problem and "width" in problem and "resnet18" in problem
    (problem,) = problems({"model": {"encoder": "small_cnn", "kwargs": {"width": 16}}})
    assert "width" in problem and "small_cnn" in problem


def test_model_kwargs_set_from_the_data_are_refused():
    found = problems({"model": {"encoder": "resnet18", "kwargs": {"in_channels": 1}}})
    assert any("in_channels" in p and "set from the data" in p for p in found), found


def test_unknown_encoder_lists_the_available():
    found = problems({"model": {"encoder": "resnet19"}})
    assert any("resnet19" in p and "resnet18" in p and "small_cnn" in p for p in found), found


def test_evaluation_defaults():
    cfg = config_from_dict({})
    assert cfg.knn.k == [20, 200] and cfg.knn.temperature == 0.1
    assert cfg.eval.features == "encoder" and cfg.eval.cache_features is False
    assert cfg.cluster.algorithms == ["kmeans", "agglomerative_ward",
                                      "agglomerative_average_cosine"]
    assert (cfg.fewshot.n_way, cfg.fewshot.shots, cfg.fewshot.n_query,
            cfg.fewshot.episodes) == (5, [1, 5], 15, 2000)
    assert cfg.fewshot.classifiers == ["ncm", "logreg"] and cfg.fewshot.classes is None
    assert cfg.robustness.corruptions is None and cfg.robustness.severities == [1, 2, 3, 4, 5]
    assert cfg.robustness.root is None and cfg.robustness.max_images is None


def test_one_number_where_a_list_is_expected():
    cfg = load_config(None, ["knn.k=20", "fewshot.shots=5", "robustness.severities=3",
                             "robustness.corruptions=fog", "fewshot.classes=[cat, 3]"])
    assert cfg.knn.k == [20] and cfg.fewshot.shots == [5]
    assert cfg.robustness.severities == [3] and cfg.robustness.corruptions == ["fog"]
    assert cfg.fewshot.classes == ["cat", 3]


@pytest.mark.parametrize(
    ("override", "needle"),
    [("knn.k=[0,20]", "knn.k"), ("knn.k=[]", "knn.k"), ("knn.temperature=0", "knn.temperature"),
     ("eval.features=projection", "eval.features"), ("eval.batch_size=0", "eval.batch_size"),
     ("cluster.algorithms=[dbscan]", "cluster.algorithms"),
     ("cluster.max_samples=1", "cluster.max_samples"), ("fewshot.n_way=1", "fewshot.n_way"),
     ("fewshot.shots=[0]", "fewshot.shots"), ("fewshot.classifiers=[svm]", "fewshot.classifiers"),
     ("fewshot.n_query=0", "fewshot.n_query"), ("robustness.severities=[0,6]",
                                                "robustness.severities"),
     ("robustness.max_images=0", "robustness.max_images"), ("knn.k=twenty", "knn.k")],
)
def test_evaluation_values_are_validated(override, needle):
    with pytest.raises(ConfigError) as info:
        load_config(None, [override])
    assert any(p.startswith(needle) for p in info.value.problems), info.value.problems


def test_all_problems_are_listed_at_once():
    with pytest.raises(ConfigError) as info:
        load_config(None, ["knn.k=[0]", "fewshot.n_way=1", "optim.epochs=3",
                           "optim.warmup_epochs=5", "knn.kk=1"])
    text = str(info.value)
    for needle in ("knn.k:", "fewshot.n_way", "optim.warmup_epochs=2", "unknown key 'knn.kk'"):
        assert needle in text, needle
