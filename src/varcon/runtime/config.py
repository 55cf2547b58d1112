"""Run configuration: typed dataclasses, YAML files and ``key=value`` overrides.

A config is data. It is read from YAML (or built from defaults), updated by dotted
``key=value`` overrides, validated as a whole (every problem is listed at once,
before any work starts) and saved next to the run as plain YAML, so a run can be
repeated from its ``config.yaml`` alone and a checkpoint stores it as a plain dict
(loadable with ``torch.load(..., weights_only=True)``).

The schema is the dataclass tree below; an unknown key is an error that lists the
valid ones. PyYAML parses files and override values (``lr=0.1`` gives a float,
``crop_scale=[0.2,1.0]`` a list, ``root=null`` None).
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import re
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "ClusterConfig",
    "Config",
    "ConfigError",
    "DataConfig",
    "EvalConfig",
    "FewshotConfig",
    "FinetuneConfig",
    "KnnConfig",
    "LinearConfig",
    "LossConfig",
    "ModelConfig",
    "OptimConfig",
    "RobustnessConfig",
    "TrainConfig",
    "apply_overrides",
    "config_from_dict",
    "config_to_dict",
    "load_config",
    "resolve_config_path",
    "save_config",
]

METHODS = ("varcon", "supcon", "ce")
DATASETS = ("digits", "cifar10", "cifar100", "imagefolder")
AUGMENTS = ("simaugment", "autoaugment", "randaugment", "linear", "eval")
AMP_MODES = ("auto", "off", "bf16", "fp16")


class ConfigError(ValueError):
    """A config could not be read or is invalid; ``problems`` lists every issue found."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        text = "invalid configuration:\n" + "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(text)


@dataclass
class DataConfig:
    dataset: str = "digits"  # digits | cifar10 | cifar100 | imagefolder
    root: str | None = None  # dataset folder (CIFAR python files, or ImageFolder train/ + val/)
    download: bool = False  # let torchvision fetch CIFAR where a network exists
    image_size: int | None = None  # resize/crop size; None = the dataset's own
    cache: str = "auto"  # auto | memory | none  (decoded uint8 cache for small images)
    cache_dir: str | None = None  # where the decoded cache goes; None = <root>/.varcon_cache
    bad_files: str = "error"  # error | skip  (unreadable files in an ImageFolder tree)
    # imagefolder: decode files to 3 (RGB) or 1 (grayscale) channels; None = RGB for
    # training, and the encoder's own number when a checkpoint is evaluated
    channels: int | None = None
    mean: list[float] | None = None  # per-channel normalisation in [0, 1]; None = dataset's
    std: list[float] | None = None
    # imagefolder without mean/std: "default" (ImageNet's) or "compute" (measured once on
    # the training split, cached next to the decoded images)
    stats: str = "default"
    augment: str = "simaugment"  # simaugment | autoaugment | randaugment
    augment_params: dict[str, Any] = field(default_factory=dict)  # constructor overrides
    num_workers: int = 2
    views: int = 2  # augmented views per image for contrastive methods (ce uses 1)
    # batch composition: random (a slice of one permutation per epoch) | class_balanced
    # (samples_per_class images of each of batch_size / samples_per_class classes per batch;
    # varcon.data.sampling.ClassBalancedBatchSampler)
    sampler: str = "random"
    samples_per_class: int | None = None
    # Class subsets (names or indices; applied to every split, labels renumbered 0..K-1 in the
    # dataset's class order): pre-train on some classes, evaluate transfer on the others.
    classes: list[Any] | None = None  # keep only these classes
    exclude_classes: list[Any] | None = None  # drop these classes
    per_class: int | None = None  # training split: a seeded class-balanced subset of N per class
    # Many classes from few (varcon.data.variants): each image in one of `rotations` quarter-turn
    # rotations (1, 2, 4) and one of `channel_orders` RGB orders (1..6), label = (class, r, p).
    rotations: int = 1
    channel_orders: int = 1


@dataclass
class ModelConfig:
    encoder: str = "small_cnn"  # any name from varcon.models.list_models()
    kwargs: dict[str, Any] = field(default_factory=dict)  # factory arguments, e.g. {width: 16}
    # local encoder weights (.safetensors or a torch state dict) loaded before pre-training;
    # checkpoints hold the weights afterwards, so this file is never read again
    pretrained: str | None = None
    head_dim: int = 128
    head_hidden: int | None = None  # None = encoder width
    sync_batchnorm: bool = False
    channels_last: bool = False
    compile: bool = False  # torch.compile the network


@dataclass
class LossConfig:
    temperature: float = 0.1  # tau1 (VarCon) / tau (SupCon)
    epsilon: float = 0.02  # VarCon's eps; 0 fixes tau2 = tau1
    detach_centroids: bool = True
    # exact: DDP yields the exact gradient of the global-batch loss.
    # per_rank: the authors' multi-GPU behaviour, 1/W of it (W = world size).
    gradient_scale: str = "exact"
    # VarCon's centroids: batch (the batch's classes only, the paper) | ema (plus running
    # prototypes of every class seen so far: absent classes join the softmax as negatives)
    prototypes: str = "batch"
    momentum: float = 0.9  # ema: weight of the old prototype in each update, in [0, 1)


@dataclass
class OptimConfig:
    optimizer: str = "sgd"  # sgd | lars
    lr: float = 0.5  # base learning rate for the global batch
    momentum: float = 0.9
    weight_decay: float = 1e-4
    nesterov: bool = False
    batch_size: int = 1024  # global batch (split evenly over processes)
    epochs: int = 200
    warmup_epochs: int = 10
    warmup_from: float = 0.01  # lr at the first warm-up step, as a fraction of lr
    min_lr_ratio: float = 0.001  # cosine decays to lr * min_lr_ratio


@dataclass
class TrainConfig:
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: str = "auto"  # auto (bf16/fp16 on CUDA, off on CPU) | off | bf16 | fp16
    deterministic: bool = False
    save_every: int = 0  # keep checkpoints/epoch_<k>.pt every k epochs (0: only last.pt)
    tau2_every: int = 1  # write tau2/epoch_<k>.npy every k epochs (0: never)
    max_nonfinite_steps: int = 10  # consecutive skipped steps before training stops
    log_every: int = 10  # TensorBoard scalar every k steps
    progress: str = "auto"  # auto (bar on a terminal, lines otherwise) | bar | lines | off
    overwrite: bool = False  # allow writing into an existing run directory
    max_steps_per_epoch: int = 0  # cap (for smoke tests); 0 = whole epoch
    # every k epochs: weighted kNN top-1 (first knn.k) of the test split against the training
    # split, logged as val_knn_top1 in metrics.jsonl (0: never). Costs one pass of the encoder
    # over both splits without gradients.
    eval_every: int = 0
    # encode each process's batch in chunks of this many images (all their views together) and
    # back-propagate chunk by chunk with the whole batch's cached embedding gradient: the same
    # step in less activation memory (varcon.engine.micro_batch). 0: the whole batch at once.
    micro_batch: int = 0


@dataclass
class LinearConfig:
    epochs: int = 100
    batch_size: int = 256
    lr: float = 5.0
    momentum: float = 0.9
    weight_decay: float = 0.0
    warmup_epochs: int = 0
    augment: str = "linear"  # training-split augmentation of the probe
    run_after_pretrain: bool = True


@dataclass
class FinetuneConfig:
    """``varcon finetune``: encoder + linear head trained end to end with cross-entropy."""

    epochs: int = 30
    batch_size: int = 256
    lr: float = 0.1  # the head's rate; the encoder's is lr * encoder_lr_scale
    encoder_lr_scale: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    warmup_epochs: int = 0
    augment: str = "linear"  # training-split augmentation (the probe's by default)


@dataclass
class EvalConfig:
    features: str = "encoder"  # encoder | head (kNN, clustering, few-shot; the probe: encoder)
    cache_features: bool = False  # keep extracted features in <output>/features/ (float16)
    batch_size: int = 256  # feature extraction batch (global)


@dataclass
class KnnConfig:
    enabled: bool = True  # run after pre-training
    k: list[int] = field(default_factory=lambda: [20, 200])  # one number or a list
    temperature: float = 0.1


@dataclass
class ClusterConfig:
    enabled: bool = True  # run after pre-training
    algorithms: list[str] = field(
        default_factory=lambda: ["kmeans", "agglomerative_ward", "agglomerative_average_cosine"]
    )
    max_samples: int = 10000  # class-balanced subsample above this (agglomerative is O(N^2))
    seed: int = 0


@dataclass
class FewshotConfig:
    n_way: int = 5
    shots: list[int] = field(default_factory=lambda: [1, 5])
    n_query: int = 15
    episodes: int = 2000
    classifiers: list[str] = field(default_factory=lambda: ["ncm", "logreg"])
    center: bool = False  # SimpleShot's CL2N: subtract the mean feature, then L2-normalise
    classes: list[Any] | None = None  # episodes only from these classes (names or indices)
    seed: int = 0


@dataclass
class RobustnessConfig:
    root: str | None = None  # published CIFAR-10-C/-100-C or ImageNet-C folder; None: generate
    corruptions: list[str] | None = None  # None: the 15 ImageNet-C types
    severities: list[int] = field(default_factory=lambda: [1, 2, 3, 4, 5])
    max_images: int | None = None  # class-balanced subset of the test split per corruption
    seed: int = 0


@dataclass
class Config:
    name: str = "run"
    method: str = "varcon"  # varcon | supcon | ce
    seed: int = 0
    output_dir: str | None = None  # default runs/<name>-<timestamp>
    resume: str | None = None  # run directory (or checkpoint file) to continue
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    linear: LinearConfig = field(default_factory=LinearConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    knn: KnnConfig = field(default_factory=KnnConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    fewshot: FewshotConfig = field(default_factory=FewshotConfig)
    robustness: RobustnessConfig = field(default_factory=RobustnessConfig)


# ----------------------------------------------------------------------------- parsing


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _valid_keys(cls: type, prefix: str = "") -> list[str]:
    keys = []
    for name, tp in _field_types(cls).items():
        if dataclasses.is_dataclass(tp):
            keys.extend(_valid_keys(tp, f"{prefix}{name}."))
        else:
            keys.append(prefix + name)
    return keys


def _unknown_key(key: str, cls: type, prefix: str) -> str:
    valid = _valid_keys(cls, prefix)
    close = difflib.get_close_matches(prefix + key, valid, n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    return f"unknown key '{prefix}{key}'{hint}; valid keys: {', '.join(valid)}"


def _coerce(value: Any, tp: Any, key: str, problems: list[str]) -> Any:
    """Check ``value`` against the annotation ``tp``; ints are accepted for floats."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], key, problems)
    if tp is Any:
        return value
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if isinstance(value, tuple):
            value = list(value)
        if item_tp is not Any and not isinstance(value, list) and _is_scalar(value, item_tp):
            value = [value]  # knn.k=20 means [20]
        if not isinstance(value, list):
            problems.append(f"{key}: expected a list, got {value!r}")
            return value
        return [_coerce(v, item_tp, f"{key}[{i}]", problems) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            problems.append(f"{key}: expected a mapping, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            problems.append(f"{key}: expected a number, got {value!r}")
            return value
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            problems.append(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            problems.append(f"{key}: expected true or false, got {value!r}")
        return value
    if tp is str:
        if isinstance(value, bool):  # YAML 1.1 reads a bare off/on as a boolean
            return "on" if value else "off"
        if not isinstance(value, str):
            problems.append(f"{key}: expected a string, got {value!r}")
        return value
    return value


def _is_scalar(value: Any, tp: Any) -> bool:
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    return False


def _build(cls: type, data: Any, prefix: str, problems: list[str]) -> Any:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        problems.append(f"{prefix.rstrip('.') or 'config'}: expected a mapping, got {data!r}")
        return cls()
    types_ = _field_types(cls)
    kwargs = {}
    for key, value in data.items():
        if key not in types_:
            problems.append(_unknown_key(str(key), cls, prefix))
            continue
        tp = types_[key]
        if dataclasses.is_dataclass(tp):
            kwargs[key] = _build(tp, value, f"{prefix}{key}.", problems)
        else:
            before = len(problems)
            coerced = _coerce(value, tp, prefix + key, problems)
            if len(problems) == before:  # a mistyped value keeps the default, so that
                kwargs[key] = coerced  # validation can still check everything else
    return cls(**kwargs)


def config_from_dict(data: dict[str, Any] | None, *, validate: bool = True) -> Config:
    """Build a :class:`Config` from nested plain data; raise :class:`ConfigError`
    listing every problem (unknown keys, wrong types and impossible values) at once."""
    problems: list[str] = []
    cfg = _build(Config, data or {}, "", problems)
    if validate:
        try:
            validate_config(cfg)
        except ConfigError as exc:
            # Skip complaints about settings already reported as mistyped (they hold defaults).
            bad = {p.split(":")[0].split("[")[0] for p in problems}
            problems += [p for p in exc.problems if p.split(":")[0] not in bad]
    if problems:
        raise ConfigError(problems)
    return cfg


def config_to_dict(cfg: Config) -> dict[str, Any]:
    """Plain nested dict (only str/int/float/bool/None/list/dict): YAML- and
    ``weights_only``-safe."""
    return dataclasses.asdict(cfg)


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, reading ``5e-4`` and ``1E5`` as floats.

    PyYAML follows YAML 1.1, whose float pattern needs a dot (``5.0e-4``); everyone writes
    ``5e-4``, and YAML 1.2 reads it as a number, so we do too.
    """


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"""),
    list("-+0123456789"),
)


def _safe_load(stream: Any) -> Any:
    return yaml.load(stream, Loader=_Loader)  # a SafeLoader subclass: no arbitrary objects


def _parse_value(text: str) -> Any:
    try:
        return _safe_load(text) if text != "" else ""
    except yaml.YAMLError:
        return text


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides to nested plain data (values parsed as YAML).

    Unknown keys are reported by :func:`config_from_dict` afterwards, all at once.
    """
    data = copy.deepcopy(data)
    problems = []
    for item in overrides:
        if "=" not in item:
            problems.append(f"override {item!r} is not of the form key=value (e.g. optim.lr=0.1)")
            continue
        key, _, text = item.partition("=")
        key = key.strip()
        if key.startswith("--"):
            key = key[2:]
        parts = key.split(".")
        node = data
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        node[parts[-1]] = _parse_value(text)
    if problems:
        raise ConfigError(problems)
    return data


def resolve_config_path(name_or_path: str | Path) -> Path:
    """A path to a YAML file, or the name of a config shipped with varcon
    (``cifar10``, ``cifar10.yaml``)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = resources.files("varcon") / "configs"
    stem = path.name if path.suffix in (".yaml", ".yml") else f"{path.name}.yaml"
    candidate = Path(str(shipped / stem))
    if candidate.is_file():
        return candidate
    available = sorted(p.name for p in Path(str(shipped)).glob("*.yaml"))
    raise ConfigError(
        [f"config file {str(name_or_path)!r} not found; shipped configs: {', '.join(available)}"]
    )


def read_yaml(path: str | Path) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as fh:
            data = _safe_load(fh)
    except yaml.YAMLError as exc:
        raise ConfigError([f"{path}: not valid YAML: {exc}"]) from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError([f"{path}: the top level must be a mapping of settings"])
    return data


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Read a YAML config (default: the built-in ``digits`` quickstart), apply
    overrides, validate. Raises :class:`ConfigError` listing every problem."""
    data = read_yaml(resolve_config_path(path if path is not None else "digits"))
    data = apply_overrides(data, overrides or [])
    return config_from_dict(data)


def save_config(cfg: Config, path: str | Path) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        yaml.safe_dump(config_to_dict(cfg), fh, sort_keys=False)


# -------------------------------------------------------------------------- validation


def _choice(problems: list[str], key: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        problems.append(f"{key}: must be one of {', '.join(choices)}; got {value!r}")


def validate_config(cfg: Config) -> None:
    """Reject impossible values before any work starts, listing all problems."""
    p: list[str] = []
    _choice(p, "method", cfg.method, METHODS)
    _choice(p, "data.dataset", cfg.data.dataset, DATASETS)
    _choice(p, "data.augment", cfg.data.augment, AUGMENTS)
    _choice(p, "linear.augment", cfg.linear.augment, AUGMENTS)
    _choice(p, "data.cache", cfg.data.cache, ("auto", "memory", "none"))
    _choice(p, "data.bad_files", cfg.data.bad_files, ("error", "skip"))
    _choice(p, "data.stats", cfg.data.stats, ("default", "compute"))
    _choice(p, "loss.gradient_scale", cfg.loss.gradient_scale, ("exact", "per_rank"))
    _choice(p, "optim.optimizer", cfg.optim.optimizer, ("sgd", "lars"))
    _choice(p, "train.amp", cfg.train.amp, AMP_MODES)
    _choice(p, "train.progress", cfg.train.progress, ("auto", "bar", "lines", "off"))
    if cfg.data.dataset in ("cifar10", "cifar100", "imagefolder") and not cfg.data.root:
        p.append(f"data.root: required for dataset {cfg.data.dataset!r} (the folder holding it)")
    if cfg.data.channels is not None and cfg.data.channels not in (1, 3):
        p.append(f"data.channels: 1 (grayscale) or 3 (RGB), got {cfg.data.channels!r}")
    elif cfg.data.channels is not None and cfg.data.dataset != "imagefolder":
        own = 1 if cfg.data.dataset == "digits" else 3
        if cfg.data.channels != own:
            p.append(f"data.channels: {cfg.data.dataset} images have {own} channel(s); "
                     "data.channels only chooses how imagefolder files are decoded")
    if cfg.data.image_size is not None and cfg.data.image_size < 1:
        p.append(f"data.image_size: must be >= 1, got {cfg.data.image_size}")
    for key in ("mean", "std"):
        values = getattr(cfg.data, key)
        if values is not None and len(values) not in (1, 3):
            p.append(f"data.{key}: give 1 or 3 numbers, got {values}")
    if cfg.data.std is not None and any(s <= 0 for s in cfg.data.std):
        p.append(f"data.std: must be > 0, got {cfg.data.std}")
    if cfg.data.num_workers < 0:
        p.append(f"data.num_workers: must be >= 0, got {cfg.data.num_workers}")
    if cfg.data.views < 1 or (cfg.method != "ce" and cfg.data.views < 2):
        p.append(f"data.views: contrastive methods need >= 2 views, got {cfg.data.views}")
    if cfg.model.head_dim < 1:
        p.append(f"model.head_dim: must be >= 1, got {cfg.model.head_dim}")
    t, e = cfg.loss.temperature, cfg.loss.epsilon
    if not t > 0:
        p.append(f"loss.temperature: must be > 0, got {t}")
    elif not 0 <= e < t:
        p.append(f"loss.epsilon: must satisfy 0 <= epsilon < temperature ({t}), got {e}")
    _validate_prototypes(p, cfg)
    o = cfg.optim
    if not o.lr > 0:
        p.append(f"optim.lr: must be > 0, got {o.lr}")
    if o.weight_decay < 0:
        p.append(f"optim.weight_decay: must be >= 0, got {o.weight_decay}")
    if not 0 <= o.momentum < 1:
        p.append(f"optim.momentum: must be in [0, 1), got {o.momentum}")
    if o.batch_size < 1:
        p.append(f"optim.batch_size: must be >= 1, got {o.batch_size}")
    if o.epochs < 1:
        p.append(f"optim.epochs: must be >= 1, got {o.epochs}")
    if o.warmup_epochs < 0 or o.warmup_epochs >= o.epochs:
        fix = max(0, min(o.warmup_epochs, o.epochs - 1))
        p.append(
            f"optim.warmup_epochs: must be >= 0 and shorter than training "
            f"(optim.epochs = {o.epochs}), got {o.warmup_epochs}; set "
            f"optim.warmup_epochs={fix} (or fewer) with optim.epochs={o.epochs}"
        )
    if not 0 < o.warmup_from <= 1:
        p.append(f"optim.warmup_from: must be in (0, 1], got {o.warmup_from}")
    if not 0 <= o.min_lr_ratio <= 1:
        p.append(f"optim.min_lr_ratio: must be in [0, 1], got {o.min_lr_ratio}")
    tr = cfg.train
    for key in ("save_every", "tau2_every", "log_every", "max_steps_per_epoch", "eval_every"):
        if getattr(tr, key) < 0:
            p.append(f"train.{key}: must be >= 0, got {getattr(tr, key)}")
    _validate_batch_composition(p, cfg)
    if tr.max_nonfinite_steps < 1:
        p.append(f"train.max_nonfinite_steps: must be >= 1, got {tr.max_nonfinite_steps}")
    li = cfg.linear
    if li.epochs < 1:
        p.append(f"linear.epochs: must be >= 1, got {li.epochs}")
    if li.batch_size < 1:
        p.append(f"linear.batch_size: must be >= 1, got {li.batch_size}")
    if not li.lr > 0:
        p.append(f"linear.lr: must be > 0, got {li.lr}")
    if li.warmup_epochs < 0 or li.warmup_epochs >= li.epochs:
        fix = max(0, min(li.warmup_epochs, li.epochs - 1))
        p.append(f"linear.warmup_epochs: must be >= 0 and < linear.epochs ({li.epochs}), got "
                 f"{li.warmup_epochs}; set linear.warmup_epochs={fix} (or fewer)")
    _validate_finetune(p, cfg.finetune)
    _validate_data_subsets(p, cfg.data)
    if cfg.data.rotations == 4 and cfg.linear.augment != "eval":
        p.append(f"data.rotations=4: the probe's training augmentation linear.augment="
                 f"{cfg.linear.augment} flips images, which confuses 90- and 270-degree "
                 "classes: set linear.augment=eval")
    _validate_model_kwargs(p, cfg.model)
    _validate_evaluation(p, cfg)
    if p:
        raise ConfigError(p)


def _validate_prototypes(p: list[str], cfg: Config) -> None:
    lo = cfg.loss
    _choice(p, "loss.prototypes", lo.prototypes, ("batch", "ema"))
    m = lo.momentum
    if isinstance(m, bool) or not isinstance(m, (int, float)) or not 0 <= m < 1:
        p.append(f"loss.momentum: must be a number in [0, 1) (the weight of the old prototype "
                 f"in each update, e.g. 0.9), got {m!r}")
    if lo.prototypes == "ema" and cfg.method != "varcon":
        p.append(f"loss.prototypes: 'ema' applies to method=varcon only (got method="
                 f"{cfg.method}); set loss.prototypes=batch, or method=varcon")


def _validate_finetune(p: list[str], f: FinetuneConfig) -> None:
    _choice(p, "finetune.augment", f.augment, AUGMENTS)
    if f.epochs < 1:
        p.append(f"finetune.epochs: must be >= 1, got {f.epochs}")
    if f.batch_size < 1:
        p.append(f"finetune.batch_size: must be >= 1, got {f.batch_size}")
    if not f.lr > 0:
        p.append(f"finetune.lr: must be > 0, got {f.lr}")
    if not f.encoder_lr_scale > 0:
        p.append(f"finetune.encoder_lr_scale: must be > 0 (the encoder's rate is finetune.lr "
                 f"times it; for a frozen encoder use varcon linear), got {f.encoder_lr_scale}")
    if not 0 <= f.momentum < 1:
        p.append(f"finetune.momentum: must be in [0, 1), got {f.momentum}")
    if f.weight_decay < 0:
        p.append(f"finetune.weight_decay: must be >= 0, got {f.weight_decay}")
    if f.warmup_epochs < 0 or f.warmup_epochs >= f.epochs:
        fix = max(0, min(f.warmup_epochs, f.epochs - 1))
        p.append(f"finetune.warmup_epochs: must be >= 0 and < finetune.epochs ({f.epochs}), "
                 f"got {f.warmup_epochs}; set finetune.warmup_epochs={fix} (or fewer)")


def _validate_data_subsets(p: list[str], d: DataConfig) -> None:
    for key in ("classes", "exclude_classes"):
        values = getattr(d, key)
        if values is None:
            continue
        if not values:
            p.append(f"data.{key}: give at least one class name or index, or null for all")
        bad = [v for v in values if isinstance(v, bool) or not isinstance(v, (int, str))]
        if bad:
            p.append(f"data.{key}: entries must be class names or integer indices, got {bad}")
    if d.classes and d.exclude_classes:
        overlap = sorted({str(v) for v in d.classes} & {str(v) for v in d.exclude_classes})
        if overlap:
            p.append(f"data.classes and data.exclude_classes both name {overlap}")
    if d.per_class is not None and d.per_class < 1:
        p.append(f"data.per_class: must be >= 1 (or null for all images), got {d.per_class}")
    from varcon.data.variants import check_variants

    try:
        check_variants(d.rotations, d.channel_orders)
    except ValueError as exc:
        p.append(str(exc))
    if d.channel_orders > 1 and d.augment == "simaugment" and (
            d.augment_params.get("grayscale_p", 0.2) > 0):
        p.append("data.channel_orders > 1 makes the channel order part of the label, and "
                 "grayscale erases it: set data.augment_params.grayscale_p=0")
    # A horizontal flip of an image turned by 90 degrees is its mirror image turned by 270:
    # with quarter turns as labels, flips make two classes of each image indistinguishable.
    if d.rotations == 4 and d.augment_params.get("hflip_p", 0.5) > 0:
        p.append("data.rotations=4 makes the quarter turn part of the label, and a horizontal "
                 "flip turns a 90-degree rotation into a 270-degree one (of the mirror image): "
                 "set data.augment_params.hflip_p=0, or use data.rotations=2")


def _validate_batch_composition(p: list[str], cfg: Config) -> None:
    """data.sampler / data.samples_per_class and train.micro_batch against the global batch
    (the per-process batch and the class counts are checked when training starts)."""
    d, batch, k = cfg.data, cfg.optim.batch_size, cfg.train.micro_batch
    _choice(p, "data.sampler", d.sampler, ("random", "class_balanced"))
    m = d.samples_per_class
    if d.sampler == "class_balanced" and m is None:
        p.append("data.sampler=class_balanced needs data.samples_per_class (images of each "
                 "class per batch, e.g. data.samples_per_class=4)")
    elif d.sampler == "random" and m is not None:
        p.append(f"data.samples_per_class={m} is only used by the class-balanced sampler: set "
                 "data.sampler=class_balanced, or remove data.samples_per_class")
    elif m is not None and m < 1:
        p.append(f"data.samples_per_class: must be >= 1, got {m}")
    elif m is not None and batch >= 1 and batch % m:
        p.append(f"data.samples_per_class={m} must divide optim.batch_size={batch} (each batch "
                 f"holds batch_size / samples_per_class whole classes): use a batch of "
                 f"{max(batch // m, 1) * m} or {-(-batch // m) * m}, or a divisor of {batch}")
    if k < 0:
        p.append(f"train.micro_batch: must be >= 0 (0: the whole batch at once), got {k}")
    elif k > batch >= 1:
        p.append(f"train.micro_batch={k} is larger than the batch (optim.batch_size={batch}): "
                 f"use a divisor of {batch}, or 0 for the whole batch at once")
    elif k and batch >= 1 and batch % k:
        p.append(f"train.micro_batch={k} must divide optim.batch_size={batch} (equal chunks): "
                 f"use a divisor of {batch}, e.g. {_largest_divisor_at_most(batch, k)}")


def _largest_divisor_at_most(n: int, k: int) -> int:
    """The largest divisor of ``n`` that is <= ``k`` (searching 10,000 candidates; else 1)."""
    return next((d for d in range(k, max(k - 10_000, 0), -1) if n % d == 0), 1)


def _validate_model_kwargs(p: list[str], m: ModelConfig) -> None:
    reserved = sorted({"in_channels", "image_size"} & set(m.kwargs))
    if reserved:
        p.append(f"model.kwargs: {reserved} are set from the data; remove them from model.kwargs")
    from varcon.models.registry import check_model_kwargs  # the registry knows the factories

    try:
        check_model_kwargs(m.encoder, {k: v for k, v in m.kwargs.items() if k not in reserved})
    except (TypeError, ValueError, ImportError) as exc:  # ImportError: timm/ without timm
        p.append(f"model: {exc}")
    if m.pretrained is not None and not m.pretrained.strip():
        p.append("model.pretrained: give a weights file (.safetensors or a torch state dict) "
                 "or null for random initialisation")


def _validate_evaluation(p: list[str], cfg: Config) -> None:
    _choice(p, "eval.features", cfg.eval.features, ("encoder", "head"))
    if cfg.eval.batch_size < 1:
        p.append(f"eval.batch_size: must be >= 1, got {cfg.eval.batch_size}")
    if not cfg.knn.k or any(k < 1 for k in cfg.knn.k):
        p.append(f"knn.k: give one or more integers >= 1, e.g. knn.k=[20,200]; got {cfg.knn.k}")
    if not cfg.knn.temperature > 0:
        p.append(f"knn.temperature: must be > 0, got {cfg.knn.temperature}")
    algorithms = ("kmeans", "agglomerative_ward", "agglomerative_average_cosine")
    unknown = [a for a in cfg.cluster.algorithms if a not in algorithms]
    if unknown or not cfg.cluster.algorithms:
        p.append(f"cluster.algorithms: choose from {', '.join(algorithms)}; got "
                 f"{cfg.cluster.algorithms}")
    if cfg.cluster.max_samples < 2:
        p.append(f"cluster.max_samples: must be >= 2, got {cfg.cluster.max_samples}")
    f = cfg.fewshot
    for key in ("n_way", "n_query", "episodes"):
        if getattr(f, key) < 1:
            p.append(f"fewshot.{key}: must be >= 1, got {getattr(f, key)}")
    if f.n_way < 2:
        p.append(f"fewshot.n_way: an episode needs >= 2 classes, got {f.n_way}")
    if f.episodes < 2:
        p.append(f"fewshot.episodes: a confidence interval needs >= 2 episodes, got {f.episodes}")
    if not f.shots or any(k < 1 for k in f.shots):
        p.append(f"fewshot.shots: give one or more integers >= 1, e.g. [1,5]; got {f.shots}")
    unknown = [c for c in f.classifiers if c not in ("ncm", "logreg")]
    if unknown or not f.classifiers:
        p.append(f"fewshot.classifiers: choose from ncm, logreg; got {f.classifiers}")
    r = cfg.robustness
    if not r.severities or any(s not in (1, 2, 3, 4, 5) for s in r.severities):
        p.append(f"robustness.severities: integers from 1 to 5, got {r.severities}")
    if r.max_images is not None and r.max_images < 1:
        p.append(f"robustness.max_images: must be >= 1 (or null), got {r.max_images}")
