"""Fuzzing (hypothesis): the config parser raises nothing but ConfigError, whatever the
nested data or override strings; every problem it lists names a setting (the one at fault
where a single one was changed); and generated valid configs are accepted, so a parser that
rejected everything would fail here too."""

from __future__ import annotations

import re
import typing

from hypothesis import given, settings
from hypothesis import strategies as st

from varcon.data import dataset_names, get_dataset
from varcon.methods import get_method, method_names
from varcon.runtime.config import (
    Augment,
    ClusterAlgorithm,
    Config,
    ConfigError,
    FewshotClassifier,
    _valid_keys,
    apply_overrides,
    config_from_dict,
    config_to_dict,
)

SETTINGS = settings(max_examples=150, deadline=None, derandomize=True)
KEYS = _valid_keys(Config)
SECTIONS = sorted({k.split(".")[0] for k in KEYS if "." in k})
NAMES = set(KEYS) | set(SECTIONS) | {"config"}

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


def _setting_named(problem: str) -> str | None:
    """The setting a problem starts with (``optim.lr: ...``, ``knn.k[0]: ...``,
    ``data.rotations=4 ...``), or None."""
    if problem.startswith(("unknown key '", "override ")):
        return "config"
    head = re.match(r"[A-Za-z_][\w.]*", problem)
    return head.group(0).rstrip(".") if head else None


def _parse(data: object) -> Config | None:
    try:
        cfg = config_from_dict(data)  # type: ignore[arg-type]
    except ConfigError as exc:
        assert exc.problems and all(isinstance(p, str) and p for p in exc.problems)
        for problem in exc.problems:  # each problem says which setting it is about
            assert _setting_named(problem) in NAMES, problem
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
    except ConfigError as exc:
        assert all(p.startswith("override ") and "key=value" in p for p in exc.problems)
        return
    _parse(data)


@SETTINGS
@given(key=st.sampled_from(KEYS), value=st.sampled_from(
    ["-1", "0", "0.5", "1e400", ".nan", "x", "[]", "[0]", "{a: 1}", "null", "true", "off"]))
def test_one_bad_override_is_named(key, value):
    """Changing one setting of a valid config: when that is rejected, a problem names the
    setting (or its section, for the encoder's arguments)."""
    data = apply_overrides({"data": {"root": "/data"}}, [f"{key}={value}"])
    try:
        config_from_dict(data)
    except ConfigError as exc:
        section = key.split(".")[0]
        assert any(key in p or p.startswith(f"{section}:") for p in exc.problems), (
            key, exc.problems)


# ------------------------------------------------------------------ valid configs accepted


def _choices(tp: object) -> list[object]:
    return list(typing.get_args(tp))


@st.composite
def valid_configs(draw: st.DrawFn) -> dict[str, object]:
    """Nested data that satisfies every documented rule (choices from the registries and
    the Literal types, numbers in range, the rules between sections)."""
    method = draw(st.sampled_from(method_names()))
    multi_view = get_method(method).multi_view
    dataset = draw(st.sampled_from(dataset_names()))
    own = get_dataset(dataset).channels
    channels = draw(st.sampled_from([None, own] if own is not None else [None, 1, 3]))
    batch_unit = draw(st.integers(1, 8))
    batch = batch_unit * draw(st.integers(1, 16))
    uses_labels = get_method(method).labels == "required"
    balanced = draw(st.booleans()) and uses_labels  # class-balanced batches need every label
    divisors = [k for k in range(1, batch + 1) if batch % k == 0]
    rotations = draw(st.sampled_from([1, 2, 4]))
    channel_orders = draw(st.integers(1, 6))
    augment = draw(st.sampled_from(_choices(Augment)))
    params: dict[str, object] = {}
    if rotations == 4:
        params["hflip_p"] = 0.0
    if channel_orders > 1:
        params["grayscale_p"] = 0.0
    epochs = draw(st.integers(1, 300))
    temperature = draw(st.floats(1e-3, 10.0))
    literal = {name: draw(st.sampled_from(choices)) for name, choices in (
        ("cache", ["auto", "memory", "none"]), ("bad_files", ["error", "skip"]),
        ("stats", ["default", "compute"]), ("amp", ["auto", "off", "bf16", "fp16"]),
        ("progress", ["auto", "bar", "lines", "off"]), ("optimizer", ["sgd", "lars"]),
        ("features", ["encoder", "head"]), ("gradient_scale", ["exact", "per_rank"]))}
    return {
        "name": draw(st.text(min_size=1, max_size=8)),
        "method": method,
        "seed": draw(st.integers(0, 2**31)),
        "data": {
            "dataset": dataset, "root": "/data/x", "channels": channels,
            "image_size": draw(st.one_of(st.none(), st.integers(1, 512))),
            "cache": literal["cache"], "bad_files": literal["bad_files"],
            "stats": literal["stats"], "augment": augment, "augment_params": params,
            "num_workers": draw(st.integers(0, 8)),
            "views": draw(st.integers(2 if multi_view else 1, 4)),
            "sampler": "class_balanced" if balanced else "random",
            "samples_per_class": batch_unit if balanced else None,
            "mean": draw(st.sampled_from([None, [0.5], [0.4, 0.5, 0.6]])),
            "std": draw(st.sampled_from([None, [0.25], [0.2, 0.3, 0.4]])),
            "classes": draw(st.sampled_from([None, [0, 1], ["cat"]])),
            "per_class": draw(st.one_of(st.none(), st.integers(1, 100))),
            "rotations": rotations, "channel_orders": channel_orders,
            "labels": draw(st.sampled_from(["use", "none"] if not uses_labels else ["use"])),
            "labeled_fraction": None if balanced else draw(
                st.one_of(st.none(), st.floats(0.01, 1.0))),
        },
        "model": {"head_dim": draw(st.integers(1, 512))},
        # varcon_ssl: at most one prototype per embedding of a step (batch x views >= 2)
        **({"ssl": {"num_prototypes": 2}} if method == "varcon_ssl" else {}),
        "loss": {
            "temperature": temperature,
            "epsilon": draw(st.floats(0.0, 0.999)) * temperature,
            "gradient_scale": literal["gradient_scale"],
            "prototypes": draw(st.sampled_from(["batch", "ema"] if method == "varcon"
                                               else ["batch"])),
            "momentum": draw(st.floats(0.0, 0.999)),
        },
        "optim": {
            "optimizer": literal["optimizer"], "lr": draw(st.floats(1e-6, 10.0)),
            "momentum": draw(st.floats(0.0, 0.999)), "weight_decay": draw(st.floats(0, 1)),
            "batch_size": batch, "epochs": epochs,
            "warmup_epochs": draw(st.integers(0, epochs - 1)),
            "warmup_from": draw(st.floats(1e-6, 1.0)), "min_lr_ratio": draw(st.floats(0, 1)),
        },
        "train": {
            "amp": literal["amp"], "progress": literal["progress"],
            "micro_batch": draw(st.sampled_from([0, *divisors])),
            "save_every": draw(st.integers(0, 10)), "eval_every": draw(st.integers(0, 10)),
            "max_nonfinite_steps": draw(st.integers(1, 20)),
        },
        "linear": {"augment": "eval" if rotations == 4 else draw(st.sampled_from(
            _choices(Augment))), "epochs": 5, "warmup_epochs": draw(st.integers(0, 4))},
        "finetune": {"augment": draw(st.sampled_from(_choices(Augment)))},
        "eval": {"features": literal["features"], "batch_size": draw(st.integers(1, 1024))},
        "knn": {"k": draw(st.lists(st.integers(1, 500), min_size=1, max_size=3)),
                "temperature": draw(st.floats(1e-3, 1.0))},
        "cluster": {"algorithms": draw(st.lists(st.sampled_from(_choices(ClusterAlgorithm)),
                                                min_size=1, max_size=3, unique=True))},
        "fewshot": {"classifiers": draw(st.lists(st.sampled_from(_choices(FewshotClassifier)),
                                                 min_size=1, max_size=2, unique=True)),
                    "shots": draw(st.lists(st.integers(1, 20), min_size=1, max_size=3)),
                    "n_way": draw(st.integers(2, 20))},
        "robustness": {"severities": draw(st.lists(st.integers(1, 5), min_size=1,
                                                   max_size=5))},
    }


@SETTINGS
@given(data=valid_configs())
def test_valid_configs_are_accepted(data):
    cfg = config_from_dict(data)  # raises ConfigError, failing the test, on any problem
    assert cfg.method == data["method"] and cfg.data.dataset == data["data"]["dataset"]
    assert config_from_dict(config_to_dict(cfg)) == cfg
