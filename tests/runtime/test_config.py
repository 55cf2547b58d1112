from pathlib import Path

import pytest
import yaml

from varcon.runtime.config import (
    Config,
    ConfigError,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    load_config,
    resolve_config_path,
    save_config,
)

CONFIG_DIR = Path(__file__).resolve().parents[2] / "src" / "varcon" / "configs"
SHIPPED = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def test_shipped_configs_are_the_papers_set():
    expected = {"digits"} | {
        f"{prefix}{ds}" for prefix in ("", "supcon_", "ce_")
        for ds in ("cifar10", "cifar100", "imagenet100", "imagenet1k")
    }
    assert set(SHIPPED) == expected


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_config_parses_and_roundtrips(name, tmp_path):
    cfg = load_config(name)
    assert cfg.method in ("varcon", "supcon", "ce")
    save_config(cfg, tmp_path / "c.yaml")
    again = config_from_dict(yaml.safe_load((tmp_path / "c.yaml").read_text()))
    assert config_to_dict(again) == config_to_dict(cfg)


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "imagenet100", "imagenet1k"])
def test_paper_recipe(name):
    cfg = load_config(name)
    assert cfg.model.encoder == "resnet50" and cfg.model.head_dim == 128
    assert cfg.optim.epochs == 200 and cfg.optim.batch_size == 1024
    assert cfg.optim.warmup_epochs == 10 and cfg.optim.momentum == 0.9
    assert (cfg.loss.temperature, cfg.loss.epsilon) == (0.1, 0.02)
    assert cfg.linear.epochs == 100 and cfg.data.views == 2
    # authors: lr 0.5 / wd 1e-4 with a 1/8 loss gradient == exact gradient with lr/8, wd*8
    assert cfg.loss.gradient_scale == "exact"
    assert cfg.optim.lr == pytest.approx(0.5 / 8)
    assert cfg.optim.weight_decay == pytest.approx(1e-4 * 8)


def test_defaults_are_valid():
    config_from_dict({})
    assert isinstance(load_config(), Config)  # the digits quickstart


def test_unknown_key_lists_valid_keys_and_suggests():
    with pytest.raises(ConfigError) as err:
        config_from_dict({"optim": {"lrr": 0.1}})
    text = str(err.value)
    assert "optim.lrr" in text and "did you mean optim.lr" in text and "optim.weight_decay" in text


def test_all_problems_listed_at_once():
    data = {"method": "byol", "optim": {"lr": -1, "epochs": 5, "warmup_epochs": 10},
            "loss": {"temperature": 0.1, "epsilon": 0.2}, "data": {"views": "two"}}
    with pytest.raises(ConfigError) as err:
        config_from_dict(data)
    probs = err.value.problems
    assert any("data.views" in p and "integer" in p for p in probs)
    # type problems stop before value checks; fix the type and see the value problems
    data["data"]["views"] = 2
    with pytest.raises(ConfigError) as err:
        config_from_dict(data)
    probs = err.value.problems
    assert any(p.startswith("method") for p in probs)
    assert any(p.startswith("optim.lr") for p in probs)
    assert any(p.startswith("optim.warmup_epochs") for p in probs)
    assert any(p.startswith("loss.epsilon") for p in probs)
    assert len(probs) >= 4


def test_wrong_types_are_named():
    with pytest.raises(ConfigError, match=r"optim\.batch_size: expected an integer"):
        config_from_dict({"optim": {"batch_size": 1.5}})
    with pytest.raises(ConfigError, match=r"train\.overwrite: expected true or false"):
        config_from_dict({"train": {"overwrite": "yes"}})
    # ints are accepted where floats are expected
    assert config_from_dict({"optim": {"lr": 1}}).optim.lr == 1.0


def test_overrides_parse_yaml_values_and_dotted_keys():
    data = apply_overrides({}, ["optim.lr=0.25", "data.augment_params.crop_scale=[0.3, 1.0]",
                                "data.root=null", "train.overwrite=true", "name=x"])
    cfg = config_from_dict(data)
    assert cfg.optim.lr == 0.25 and cfg.data.augment_params == {"crop_scale": [0.3, 1.0]}
    assert cfg.data.root is None and cfg.train.overwrite is True and cfg.name == "x"
    with pytest.raises(ConfigError, match="key=value"):
        apply_overrides({}, ["optim.lr"])


def test_root_required_for_file_datasets():
    with pytest.raises(ConfigError, match=r"data\.root: required"):
        config_from_dict({"data": {"dataset": "cifar10"}})


def test_unknown_config_name_lists_shipped():
    with pytest.raises(ConfigError, match=r"cifar10\.yaml"):
        resolve_config_path("nonexistent_config")
    assert resolve_config_path("cifar10").name == "cifar10.yaml"
    assert resolve_config_path("cifar10.yaml").name == "cifar10.yaml"


def test_bad_yaml_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(bad)
