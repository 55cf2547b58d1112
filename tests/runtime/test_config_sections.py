"""Config validation next to the fields: Literal choices checked by the parser, each section's
own ``problems``, the rules between sections, names from the method and dataset registries,
and sections registered from outside (``register_config_section``)."""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Literal

import pytest
import torch
import yaml

from varcon.data import DatasetInfo, DatasetSpec, TensorImageDataset, register_dataset
from varcon.data.registry import DATASETS
from varcon.methods import METHODS, MethodOutput, MethodSpec, register_method
from varcon.runtime import config as config_module
from varcon.runtime.config import (
    Config,
    ConfigError,
    DataConfig,
    LossConfig,
    _valid_keys,
    config_from_dict,
    config_sections,
    config_to_dict,
    load_config,
    register_config_section,
    save_config,
    unregister_config_section,
    validate_config,
)


def problems(data: dict) -> list[str]:
    with pytest.raises(ConfigError) as info:
        config_from_dict(data)
    return info.value.problems


def _literal_fields() -> list[tuple[str, tuple[object, ...]]]:
    """(key, choices) of every Literal-typed setting of the built-in sections."""
    found = []
    for section in config_sections():
        cls = type(getattr(Config(), section))
        for name, tp in typing.get_type_hints(cls).items():
            if typing.get_origin(tp) is Literal:
                found.append((f"{section}.{name}", typing.get_args(tp)))
    return found


LITERALS = _literal_fields()


def test_string_choices_are_literal_types():
    keys = {key for key, _ in LITERALS}
    assert {"data.cache", "data.bad_files", "data.stats", "data.augment", "data.sampler",
            "loss.gradient_scale", "loss.prototypes", "optim.optimizer", "train.amp",
            "train.progress", "linear.augment", "finetune.augment", "eval.features"} <= keys


@pytest.mark.parametrize(("key", "choices"), LITERALS, ids=[k for k, _ in LITERALS])
def test_every_literal_is_checked_by_the_parser(key, choices):
    section, name = key.split(".")
    (problem,) = [p for p in problems({section: {name: "bogus"}}) if p.startswith(key)]
    assert problem == (f"{key}: must be one of {', '.join(map(str, choices))}; "
                       "got 'bogus'")
    for choice in choices:  # every choice is accepted where nothing else conflicts
        data = {section: {name: choice}}
        if key == "data.sampler" and choice == "class_balanced":
            data["data"]["samples_per_class"] = 4
        if key == "loss.prototypes":
            data["method"] = "varcon"
        if key == "data.labels":  # hiding the labels needs a self-supervised method
            data["method"] = "simclr"
        assert getattr(getattr(config_from_dict(data), section), name) == choice


def test_yaml_booleans_read_as_on_off_for_choices():
    assert load_config(None, ["train.amp=off"]).train.amp == "off"  # YAML 1.1: off is False
    (problem,) = problems({"data": {"cache": False}})
    assert problem == "data.cache: must be one of auto, memory, none; got 'off'"


def test_list_of_choices_names_the_entry():
    (problem,) = problems({"cluster": {"algorithms": ["kmeans", "dbscan"]}})
    assert problem.startswith("cluster.algorithms[1]: must be one of kmeans,")
    assert load_config(None, ["cluster.algorithms=kmeans"]).cluster.algorithms == ["kmeans"]
    (problem,) = problems({"fewshot": {"classifiers": []}})
    assert problem == "fewshot.classifiers: choose from ncm, logreg; got []"


def test_each_section_validates_itself():
    assert DataConfig().problems() == []
    assert DataConfig(image_size=0).problems() == ["data.image_size: must be >= 1, got 0"]
    # the prefix is the section's name in the config
    assert DataConfig(num_workers=-1).problems("d") == ["d.num_workers: must be >= 0, got -1"]
    for name in config_sections():
        section = Config().section(name)
        assert callable(section.problems) and section.problems(name) == []


def test_loss_checks_are_the_losses_own():
    """loss.temperature/epsilon/momentum: the messages of varcon.losses' checks, under the
    config key (so a rule changed there changes here)."""
    from varcon.losses.functional import check_hyperparameters

    with pytest.raises(ValueError) as info:
        check_hyperparameters(0.1, 0.2)
    (problem,) = LossConfig(epsilon=0.2).problems()
    assert problem == "loss.epsilon: " + str(info.value).removeprefix("epsilon ")
    (problem,) = LossConfig(temperature=float("inf")).problems()  # not finite: refused
    assert problem.startswith("loss.temperature: must be a finite number > 0")
    (problem,) = LossConfig(momentum=1.0).problems()
    assert problem.startswith("loss.momentum: must be a number in [0, 1)")


def test_rules_between_sections_stay_in_config():
    cfg = Config(method="supcon")
    cfg.loss.prototypes = "ema"
    cfg.data.rotations = 4
    cfg.data.augment_params = {"hflip_p": 0.0}
    cfg.optim.batch_size = 64
    cfg.train.micro_batch = 24
    found = cfg.problems()
    assert [p.split(":")[0].split(" ")[0] for p in found] == [
        "loss.prototypes", "data.rotations=4", "train.micro_batch=24"]
    with pytest.raises(ConfigError) as info:
        validate_config(cfg)  # the old public name
    assert info.value.problems == found


def test_views_against_the_method():
    assert config_from_dict({"method": "ce", "data": {"views": 1}}).data.views == 1
    (problem,) = problems({"method": "varcon", "data": {"views": 1}})
    assert problem.startswith("data.views: contrastive methods need >= 2 views")
    (problem,) = problems({"method": "ce", "data": {"views": 0}})
    assert problem.startswith("data.views: must be >= 1")


def test_dataset_needs_root_from_the_registry():
    (problem,) = problems({"data": {"dataset": "cifar100"}})
    assert problem.startswith("data.root: required for data.dataset=cifar100")
    (problem,) = problems({"data": {"dataset": "mnist"}})
    assert problem == ("data.dataset: must be one of digits, cifar10, cifar100, imagefolder; "
                       "got 'mnist'")


@pytest.fixture
def registered():
    """Register things for one test and remove them afterwards."""
    added: list[tuple[object, str]] = []

    def add(registry: object, name: str) -> None:
        added.append((registry, name))

    yield add
    for registry, name in added:
        if registry is config_module:
            unregister_config_section(name)
        else:
            registry.unregister(name)  # type: ignore[attr-defined]


def _load_toy(root: object, split: str, **options: object) -> TensorImageDataset:
    info = DatasetInfo("toy", 2, ["a", "b"], 3, 4, (0.5,) * 3, (0.25,) * 3)
    return TensorImageDataset(torch.zeros(4, 3, 4, 4, dtype=torch.uint8), [0, 1, 0, 1], info)


def test_registered_dataset_is_a_valid_choice(registered):
    register_dataset(DatasetSpec("toy_cfg", _load_toy, 3, (0.5,) * 3, (0.25,) * 3,
                                 needs_root=True))
    registered(DATASETS, "toy_cfg")
    (problem,) = problems({"data": {"dataset": "toy_cfg"}})
    assert problem.startswith("data.root: required for data.dataset=toy_cfg")
    cfg = config_from_dict({"data": {"dataset": "toy_cfg", "root": "/x", "channels": 3}})
    assert cfg.data.dataset == "toy_cfg"
    (problem,) = problems({"data": {"dataset": "toy_cfg", "root": "/x", "channels": 1}})
    assert problem.startswith("data.channels: toy_cfg images have 3 channel(s)")


def test_registered_method_is_a_valid_choice_with_its_own_rules(registered):
    def compute(loss_fn, outputs, labels):
        return MethodOutput(outputs.sum(), {}, {})

    register_method(MethodSpec(
        name="one_view", build_loss=lambda cfg, k: torch.nn.Identity(), compute=compute,
        multi_view=False,
        validate=lambda cfg: [] if cfg.optim.batch_size <= 512 else
        ["optim.batch_size: one_view needs a batch of at most 512"]))
    registered(METHODS, "one_view")
    cfg = config_from_dict({"method": "one_view", "data": {"views": 1},
                            "optim": {"batch_size": 256}})
    assert cfg.method == "one_view"
    assert problems({"method": "one_view", "data": {"views": 1}}) == [
        "optim.batch_size: one_view needs a batch of at most 512"]
    assert problems({"method": "nope"})[0].startswith(
        "method: must be one of varcon, supcon, ce, simclr, varcon_ssl, one_view; got 'nope'")


@dataclass
class ToyProtocolConfig:
    enabled: bool = True
    mode: Literal["fast", "exact"] = "fast"
    sizes: list[int] = field(default_factory=lambda: [1, 2])
    rate: float = 0.5

    def problems(self, prefix: str) -> list[str]:
        return [] if self.rate > 0 else [f"{prefix}.rate: must be > 0, got {self.rate}"]


def test_registered_section_reads_validates_and_saves(registered, tmp_path):
    register_config_section("toyeval", ToyProtocolConfig)
    registered(config_module, "toyeval")
    assert "toyeval" in config_sections() and "toyeval.mode" in _valid_keys(Config)
    cfg = load_config(None, ["toyeval.mode=exact", "toyeval.sizes=3", "toyeval.rate=1"])
    assert cfg.toyeval == ToyProtocolConfig(mode="exact", sizes=[3], rate=1.0)
    assert cfg.section("toyeval") is cfg.toyeval and cfg.section("optim") is cfg.optim
    assert config_from_dict({}).toyeval == ToyProtocolConfig()  # defaults
    # typed and validated like the built-in sections, every problem at once
    with pytest.raises(ConfigError) as info:
        load_config(None, ["toyeval.mode=slow", "toyeval.rate=0", "toyeval.ratee=1",
                           "optim.lr=-1"])
    text = str(info.value)
    for needle in ("toyeval.mode: must be one of fast, exact; got 'slow'",
                   "toyeval.rate: must be > 0, got 0.0",
                   "unknown key 'toyeval.ratee' (did you mean toyeval.rate", "optim.lr"):
        assert needle in text, needle
    # kept in the plain dict (checkpoints) and config.yaml, and read back equal
    data = config_to_dict(cfg)
    assert data["toyeval"] == {"enabled": True, "mode": "exact", "sizes": [3], "rate": 1.0}
    save_config(cfg, tmp_path / "config.yaml")
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["toyeval"]["mode"] == "exact"
    assert load_config(tmp_path / "config.yaml") == cfg
    # assignment and copies keep it
    cfg.toyeval = ToyProtocolConfig(rate=2.0)
    assert cfg.section("toyeval").rate == 2.0 and "toyeval" not in vars(cfg)
    assert dataclasses.replace(cfg, seed=3).toyeval.rate == 2.0


def test_section_registered_after_a_config_was_built(registered):
    cfg = Config()
    register_config_section("late", ToyProtocolConfig)
    registered(config_module, "late")
    assert cfg.late == ToyProtocolConfig() and config_to_dict(cfg)["late"]["rate"] == 0.5
    assert cfg.problems() == []


def test_section_names_that_clash_are_refused(registered):
    for name in ("optim", "method", "seed", "section", "validate", "problems", "_sections"):
        with pytest.raises(ValueError, match=r"clashes|identifier"):
            register_config_section(name, ToyProtocolConfig)
    for name in ("", "a-b", "1x"):
        with pytest.raises(ValueError, match="identifier"):
            register_config_section(name, ToyProtocolConfig)
    with pytest.raises(TypeError, match="dataclass"):
        register_config_section("plain", dict)

    @dataclass
    class NoDefault:
        x: int

    with pytest.raises(TypeError, match="needs a default"):
        register_config_section("nodefault", NoDefault)
    register_config_section("twice", ToyProtocolConfig)
    registered(config_module, "twice")
    register_config_section("twice", ToyProtocolConfig)  # the same class again: a no-op
    with pytest.raises(ValueError, match="already registered"):
        register_config_section("twice", LossConfig)


def test_unknown_attribute_is_still_an_error():
    with pytest.raises(AttributeError, match="toyeval"):
        Config().toyeval  # noqa: B018  (not registered here)
    with pytest.raises(KeyError, match="no config section 'nope'"):
        Config().section("nope")
