"""Encoder registry: names, errors, registration of user factories."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from varcon.models import create_model, list_models, register_model
from varcon.models import registry as registry_mod


@pytest.fixture()
def clean_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry_mod, "_REGISTRY", dict(registry_mod._REGISTRY))


def test_list_models_sorted_and_complete() -> None:
    names = list_models()
    assert names == sorted(names)
    assert {"resnet18", "resnet34", "resnet50", "resnet101", "small_cnn"} <= set(names)


def test_unknown_name_lists_available() -> None:
    with pytest.raises(ValueError, match="nope") as info:
        create_model("nope")
    for name in list_models():
        assert name in str(info.value)


@pytest.mark.parametrize("name", ["resnet18", "small_cnn"])
def test_unknown_kwargs_are_named(name: str) -> None:
    with pytest.raises(TypeError, match="bogus_arg"):
        create_model(name, in_channels=3, image_size=32, bogus_arg=1)


class _Toy(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.fc = nn.Linear(4, width)
        self.out_dim = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


@pytest.mark.usefixtures("clean_registry")
def test_register_and_create_custom_model() -> None:
    @register_model("toy")
    def toy(*, width: int = 3) -> nn.Module:
        return _Toy(width)

    assert "toy" in list_models()
    model = create_model("toy", width=5)
    assert model.out_dim == 5
    assert model(torch.zeros(2, 1, 2, 2)).shape == (2, 5)
    with pytest.raises(TypeError, match="height"):
        create_model("toy", height=2)


@pytest.mark.usefixtures("clean_registry")
def test_duplicate_registration_rejected_unless_overwrite() -> None:
    register_model("toy")(lambda: _Toy(2))
    with pytest.raises(ValueError, match="already registered"):
        register_model("toy")(lambda: _Toy(3))
    register_model("toy", overwrite=True)(lambda: _Toy(4))
    assert create_model("toy").out_dim == 4


@pytest.mark.usefixtures("clean_registry")
def test_factory_without_out_dim_rejected() -> None:
    register_model("bad")(lambda: nn.Linear(2, 2))
    with pytest.raises(TypeError, match="out_dim"):
        create_model("bad")


@pytest.mark.usefixtures("clean_registry")
def test_var_keyword_factory_receives_everything() -> None:
    seen: dict[str, object] = {}

    @register_model("kw")
    def kw(**kwargs: object) -> nn.Module:
        seen.update(kwargs)
        return _Toy(2)

    create_model("kw", anything=1)
    assert seen == {"anything": 1}


def test_invalid_name_rejected() -> None:
    with pytest.raises(ValueError):
        register_model("")
