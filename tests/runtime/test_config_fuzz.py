"""Fuzzing (hypothesis): the config parser raises nothing but ConfigError, whatever the
nested data or override strings."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from varcon.runtime.config import (
    Config,
    ConfigError,
    _valid_keys,
    apply_overrides,
    config_from_dict,
    config_to_dict,
)

SETTINGS = settings(max_examples=150, deadline=None, derandomize=True)
KEYS = _valid_keys(Config)
SECTIONS = sorted({k.split(".")[0] for k in KEYS})

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-10**20, 10**20),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8),
    st.sampled_from(["varcon", "off", "auto", "cpu", "sgd", "digits", "-1", "1e-3"]),
)
values = st.recursive(
    scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                     st.dictionaries(st.text(max_size=5), inner, max_size=3)),
    max_leaves=6,
)
keys = st.one_of(st.sampled_from(KEYS + SECTIONS), st.text(max_size=10))


@st.composite
def nested(draw: st.DrawFn) -> object:
    data: dict[object, object] = {}
    for _ in range(draw(st.integers(0, 6))):
        key = draw(keys)
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                break
            node = child
        else:
            node[parts[-1]] = draw(values)
    if draw(st.integers(0, 9)) == 0:  # not even a mapping at the top
        return draw(values)
    return data


def _parse(data: object) -> Config | None:
    try:
        cfg = config_from_dict(data)  # type: ignore[arg-type]
    except ConfigError as exc:
        assert exc.problems and all(isinstance(p, str) and p for p in exc.problems)
        return None
    assert isinstance(cfg, Config)
    assert config_from_dict(config_to_dict(cfg)) == cfg  # a valid config round-trips
    return cfg


@SETTINGS
@given(data=nested())
def test_nested_data_only_raises_config_error(data):
    _parse(data)


override_text = st.one_of(
    st.builds(lambda k, v: f"{k}={v}", st.sampled_from(KEYS),
              st.one_of(st.text(max_size=12), st.sampled_from(
                  ["[1,2", "{a: 1}", "null", "-1", ".nan", ".inf", "1e400", "[0.2, 1.0]",
                   "!!python/object:os.system", "&a [*a]", "'", "off", "10"]))),
    st.text(max_size=20),
)


@SETTINGS
@given(overrides=st.lists(override_text, max_size=5))
def test_override_strings_only_raise_config_error(overrides):
    try:
        data = apply_overrides({"name": "fuzz"}, overrides)
    except ConfigError:
        return
    _parse(data)
