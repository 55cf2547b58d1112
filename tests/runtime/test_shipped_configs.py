"""Every shipped config (``src/varcon/configs/*.yaml``, what ``varcon configs`` lists) loads and
validates with every YAML value applied, and its network and training data pipeline build and
fit together on tiny generated data in the dataset's real on-disk format. Nothing trains here:
one end-to-end ``varcon pretrain`` per on-disk format is in tests/engine/test_configs_run.py.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import pytest
import torch

from clitools import run_cli
from datagen import write_cifar_python, write_image_folder
from varcon.data import MultiView, SimAugment, TransformedDataset
from varcon.models import build_network_from_spec
from varcon.runtime.config import (
    config_from_dict,
    config_to_dict,
    load_config,
    read_yaml,
    resolve_config_path,
)
from varcon.runtime.data import build_train_data, run_network_spec

CONFIG_DIR = Path(str(resources.files("varcon") / "configs"))
NAMES = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
TREE_CLASSES = ("n01", "n02", "n03")  # the generated ImageFolder tree's classes
CLASSES = {"digits": 10, "cifar10": 10, "cifar100": 100, "imagefolder": len(TREE_CLASSES)}
SIZES = {"digits": 8, "cifar10": 32, "cifar100": 32}  # the datasets' own image sizes
CHANNELS = {"digits": 1, "cifar10": 3, "cifar100": 3, "imagefolder": 3}
SIMAUGMENT_DEFAULTS = {"crop_scale": (0.2, 1.0), "hflip_p": 0.5, "jitter_p": 0.8,
                       "grayscale_p": 0.2}


def _expected_method(name: str) -> str:
    return name.split("_")[0] if name.startswith(("ce_", "supcon_")) else "varcon"


def _expected_dataset(name: str) -> str:
    stem = name.split("_")[-1]
    return stem if stem in ("digits", "cifar10", "cifar100") else "imagefolder"


def test_there_are_shipped_configs_of_every_method_and_dataset():
    assert len(NAMES) >= 13, NAMES  # the glob found them
    assert {_expected_method(n) for n in NAMES} == {"varcon", "supcon", "ce"}
    assert {_expected_dataset(n) for n in NAMES} == set(CLASSES)


def test_varcon_configs_lists_every_shipped_config(capsys):
    code, out, _ = run_cli(capsys, "configs")
    assert code == 0
    lines = out.splitlines()
    assert [line.split()[0] for line in lines] == NAMES
    for line, name in zip(lines, NAMES, strict=True):  # each with its YAML's first comment
        first = (CONFIG_DIR / f"{name}.yaml").read_text().splitlines()[0].lstrip("# ")
        assert line.split(maxsplit=1)[1] == first


@pytest.mark.parametrize("name", NAMES)
def test_shipped_config_validates_with_every_value_applied(name):
    path = resolve_config_path(name)
    assert path == CONFIG_DIR / f"{name}.yaml"
    raw = read_yaml(path)
    cfg = load_config(path)  # validates: raises ConfigError listing every problem
    assert cfg.method == _expected_method(name)
    assert cfg.data.dataset == _expected_dataset(name)
    assert cfg.name.endswith(cfg.method) and cfg.name.split("-")[0] in name
    assert cfg.data.views == (1 if cfg.method == "ce" else 2)
    assert cfg.model.encoder == ("small_cnn" if name == "digits" else "resnet50")
    if cfg.data.dataset == "imagefolder":
        assert cfg.data.image_size == 224 and cfg.data.root
    # every value written in the YAML is the config's (none ignored or renamed)
    values = config_to_dict(cfg)
    for key, value in raw.items():
        if not isinstance(value, dict):
            assert values[key] == value, key
            continue
        for field, v in value.items():
            got = values[key][field]
            assert got == v or got == [v], (f"{key}.{field}", got, v)  # knn.k: 200 -> [200]
    # the config survives the round trip through the run directory's config.yaml
    assert config_from_dict(values) == cfg


@pytest.fixture(scope="module")
def roots(tmp_path_factory) -> dict[str, Path | None]:
    """Tiny datasets in the real on-disk formats: CIFAR python pickles and a JPEG tree."""
    base = tmp_path_factory.mktemp("data")
    write_cifar_python(base / "cifar10", "cifar10", n_train=10, n_test=5)
    write_cifar_python(base / "cifar100", "cifar100", n_train=10, n_test=5)
    # images of several sizes and aspect ratios, all smaller than the 224 px crop
    write_image_folder(base / "tree", classes=TREE_CLASSES, per_class=2,
                       size=[(40, 32), (30, 44)], fmt="jpeg")
    return {"digits": None, "cifar10": base / "cifar10", "cifar100": base / "cifar100",
            "imagefolder": base / "tree"}


def _arch_key(spec: dict) -> str:
    """What decides the architecture (a projection head does not depend on the classes)."""
    spec = dict(spec, mean=None, std=None)
    if spec["method"] != "ce":
        spec.update(method="contrastive", num_classes=None)
    return json.dumps(spec, sort_keys=True)


class _Networks:
    """One network per architecture, shared by the configs (a ResNet-50 takes a second to
    build and a 32 px forward takes seconds on a CPU): ``meta(key)`` has shapes and no data,
    so full-size forwards cost nothing; ``real(key)`` is returned once per architecture, the
    first time only (None afterwards), for one small forward with numbers."""

    def __init__(self) -> None:
        self._meta: dict[str, torch.nn.Module] = {}
        self._real: set[str] = set()

    @staticmethod
    def _build(key: str) -> torch.nn.Module:
        spec = json.loads(key)
        if spec["method"] == "contrastive":
            spec.update(method="varcon", num_classes=1)
        return build_network_from_spec(spec).eval()

    def meta(self, key: str) -> torch.nn.Module:
        if key not in self._meta:
            with torch.device("meta"):
                self._meta[key] = self._build(key)
        return self._meta[key]

    def real(self, key: str) -> torch.nn.Module | None:
        if key in self._real:
            return None
        self._real.add(key)
        return self._build(key)


@pytest.fixture(scope="module")
def networks() -> _Networks:
    return _Networks()


@pytest.mark.parametrize("name", NAMES)
def test_shipped_config_builds_its_network_and_data_pipeline(name, roots, networks):
    dataset = _expected_dataset(name)
    overrides = ["data.num_workers=0"]
    if roots[dataset] is not None:
        overrides.append(f"data.root={roots[dataset]}")
    cfg = load_config(resolve_config_path(name), overrides)
    data = build_train_data(cfg)

    # the dataset, read from its on-disk format
    assert data.info.num_classes == CLASSES[dataset]
    assert data.info.channels == CHANNELS[dataset]
    size = cfg.data.image_size or SIZES[dataset]
    assert data.image_size == size
    if cfg.data.mean is not None:
        assert list(data.mean) == cfg.data.mean and list(data.std) == cfg.data.std
    assert len(data.mean) == len(data.std) == data.info.channels

    # the training transform is the config's augmentation with its parameters
    aug = data.train_transform
    assert cfg.data.augment == "simaugment" and isinstance(aug, SimAugment)
    assert aug.image_size == size
    assert aug.mean == list(data.mean) and aug.std == list(data.std)
    expected = {**SIMAUGMENT_DEFAULTS, **{
        p: tuple(v) if isinstance(v, list) else v for p, v in cfg.data.augment_params.items()}}
    assert {p: getattr(aug, p) for p in expected} == expected
    if cfg.method == "ce":  # SupContrast's main_ce: crop and flip only
        assert aug.jitter_p == 0 and aug.grayscale_p == 0

    # views as the engine makes them: V per image for contrastive methods, one for ce,
    # each item's draws from its own seed (repeatable, independent of the batch)
    transform = aug if cfg.method == "ce" else MultiView(aug, n_views=cfg.data.views)
    train_set = TransformedDataset(data.dataset, transform)
    images, labels = TransformedDataset.collate(train_set.__getitems__([(0, 11), (1, 12)]))
    c = data.info.channels
    view_shape = (c, size, size) if cfg.method == "ce" else (cfg.data.views, c, size, size)
    assert images.shape == (2, *view_shape) and images.dtype == torch.float32
    assert torch.isfinite(images).all() and images.std() > 0.1  # normalised, not constant
    assert labels.tolist() == data.dataset.targets[:2].tolist()
    again, _ = TransformedDataset.collate(train_set.__getitems__([(0, 11)]))
    assert torch.equal(again[0], images[0])
    other, _ = TransformedDataset.collate(train_set.__getitems__([(0, 99)]))
    assert not torch.equal(other[0], images[0])  # another seed, another augmentation
    if cfg.method != "ce":
        assert not torch.equal(images[0, 0], images[0, 1])  # two different views

    # the network the run would build takes those views
    spec = run_network_spec(cfg, data)
    assert (spec["encoder"], spec["num_classes"]) == (cfg.model.encoder, CLASSES[dataset])
    assert (spec["in_channels"], spec["image_size"]) == (c, size)
    out_dim = cfg.model.head_dim if cfg.method != "ce" else CLASSES[dataset]
    flat = images.reshape(-1, c, size, size)
    key = _arch_key(spec)
    shape_net = networks.meta(key)
    assert shape_net(flat.to("meta")).shape == (len(flat), out_dim)
    if cfg.model.encoder == "resnet50":
        assert shape_net.encoder.out_dim == 2048
    # numbers, once per architecture: one view of the 2 images, at 8 px for ResNet-50 (global
    # pooling takes any size; a 224 px ResNet-50 forward costs seconds on a CPU)
    net = networks.real(key)
    if net is None:
        return
    x = images if cfg.method == "ce" else images[:, 0]
    if size > 8:
        x = torch.nn.functional.interpolate(x, size=8, mode="bilinear", antialias=True)
    with torch.no_grad():
        features = net.encode(x)
        out = net.head(features)
    assert features.shape == (2, net.encoder.out_dim) and torch.isfinite(features).all()
    assert out.shape == (2, out_dim) and torch.isfinite(out).all()
    if cfg.method != "ce":  # the projection head's outputs are unit vectors
        torch.testing.assert_close(out.norm(dim=1), torch.ones(2))
    else:
        assert features.std() > 0 and out.std() > 0
