"""Run configuration: typed dataclasses, YAML files and ``key=value`` overrides.

A config is data. It is read from YAML (or built from defaults), updated by dotted
``key=value`` overrides, validated as a whole (every problem is listed at once,
before any work starts) and saved next to the run as plain YAML, so a run can be
repeated from its ``config.yaml`` alone and a checkpoint stores it as a plain dict
(loadable with ``torch.load(..., weights_only=True)``).

The schema is the dataclass tree below; an unknown key is an error that lists the
valid ones. PyYAML parses files and override values (``lr=0.1`` gives a float,
``crop_scale=[0.2,1.0]`` a list, ``root=null`` None).

Validation has three layers, each next to what it checks:

* types, including the choices written as ``Literal[...]`` annotations, are checked by the
  parser (:func:`_coerce`) for every field;
* each section checks its own values in its ``problems(prefix)`` method, right after its
  fields (a lower layer's own check, e.g. :func:`varcon.losses.functional.check_hyperparameters`,
  is called rather than restated);
* :meth:`Config.problems` adds the rules that span sections, and the names users extend
  come from registries: ``method`` from :mod:`varcon.methods`, ``data.dataset`` from
  :mod:`varcon.data.registry`.

Other packages add whole sections with :func:`register_config_section`.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import os
import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml

from varcon._registry import Registry

__all__ = [
    "AmpMode",
    "Augment",
    "ClusterAlgorithm",
    "ClusterConfig",
    "Config",
    "ConfigError",
    "DataConfig",
    "EvalConfig",
    "FewshotClassifier",
    "FewshotConfig",
    "FinetuneConfig",
    "KnnConfig",
    "LinearConfig",
    "LossConfig",
    "ModelConfig",
    "OptimConfig",
    "RobustnessConfig",
    "TrackingConfig",
    "TrainConfig",
    "apply_overrides",
    "config_from_dict",
    "config_sections",
    "config_to_dict",
    "fit_warmups",
    "load_config",
    "register_config_section",
    "resolve_config_path",
    "save_config",
    "unregister_config_section",
    "validate_config",
]

# Choices checked by the parser (see _coerce). Methods and datasets are not listed here:
# users register their own (varcon.methods, varcon.data.registry).
Augment = Literal["simaugment", "autoaugment", "randaugment", "linear", "eval"]
AmpMode = Literal["auto", "off", "bf16", "fp16"]
ClusterAlgorithm = Literal["kmeans", "agglomerative_ward", "agglomerative_average_cosine"]
FewshotClassifier = Literal["ncm", "logreg"]


class ConfigError(ValueError):
    """A config could not be read or is invalid; ``problems`` lists every issue found."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        text = "invalid configuration:\n" + "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(text)


def _delegate(p: list[str], key: str, arg: str, check: Callable[[], object]) -> bool:
    """Run a lower layer's own check; its ``ValueError`` becomes a problem naming the config
    ``key`` (the message's leading ``arg`` name replaced by the key). True if it passed."""
    try:
        check()
    except ValueError as exc:
        text = str(exc)
        p.append(f"{key}: {text[len(arg) + 1:] if text.startswith(arg + ' ') else text}")
        return False
    return True


def _not_registered(key: str, value: str, names: tuple[str, ...]) -> str:
    """The problem for a name missing from a registry: the choices, and the closest ones."""
    close = difflib.get_close_matches(str(value), names, n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    return f"{key}: must be one of {', '.join(names)}; got {value!r}{hint}"


def _positive(params: dict[str, Any], key: str, default: float) -> bool:
    """Whether ``params[key]`` (``default`` if absent) is a number > 0 (anything else is
    left to the transform's own check when it is built)."""
    value = params.get(key, default)
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


def _warmup_fix(warmup: int, epochs: int) -> int:
    """The warm-up to suggest: the given one clipped to [0, epochs - 1]."""
    return max(0, min(warmup, epochs - 1))


def _run_length_problems(prefix: str, epochs: int, batch_size: int, lr: float) -> list[str]:
    """Epochs, batch and rate of a supervised evaluation run (``linear``, ``finetune``)."""
    p: list[str] = []
    if epochs < 1:
        p.append(f"{prefix}.epochs: must be >= 1, got {epochs}")
    if batch_size < 1:
        p.append(f"{prefix}.batch_size: must be >= 1, got {batch_size}")
    if not lr > 0:
        p.append(f"{prefix}.lr: must be > 0, got {lr}")
    return p


def _warmup_problems(prefix: str, warmup: int, epochs: int) -> list[str]:
    """A warm-up shorter than the run (``linear``, ``finetune``), with the value to use."""
    if 0 <= warmup < epochs:
        return []
    return [f"{prefix}.warmup_epochs: must be >= 0 and < {prefix}.epochs ({epochs}), got "
            f"{warmup}; set {prefix}.warmup_epochs={_warmup_fix(warmup, epochs)} (or fewer)"]


@dataclass
class DataConfig:
    dataset: str = "digits"  # a name from varcon.data.dataset_names(): digits | cifar10 | ...
    root: str | None = None  # dataset folder (CIFAR python files, or ImageFolder train/ + val/)
    download: bool = False  # let torchvision fetch CIFAR where a network exists
    image_size: int | None = None  # resize/crop size; None = the dataset's own
    # decoded uint8 cache for small images
    cache: Literal["auto", "memory", "none"] = "auto"
    cache_dir: str | None = None  # where the decoded cache goes; None = <root>/.varcon_cache
    bad_files: Literal["error", "skip"] = "error"  # unreadable files in an ImageFolder tree
    # imagefolder: decode files to 3 (RGB) or 1 (grayscale) channels; None = RGB for
    # training, and the encoder's own number when a checkpoint is evaluated
    channels: int | None = None
    mean: list[float] | None = None  # per-channel normalisation in [0, 1]; None = dataset's
    std: list[float] | None = None
    # imagefolder without mean/std: "default" (ImageNet's) or "compute" (measured once on
    # the training split, cached next to the decoded images)
    stats: Literal["default", "compute"] = "default"
    augment: Augment = "simaugment"  # simaugment | autoaugment | randaugment
    augment_params: dict[str, Any] = field(default_factory=dict)  # constructor overrides
    num_workers: int = 2
    views: int = 2  # augmented views per image for contrastive methods (ce uses 1)
    # batch composition: random (a slice of one permutation per epoch) | class_balanced
    # (samples_per_class images of each of batch_size / samples_per_class classes per batch;
    # varcon.data.sampling.ClassBalancedBatchSampler)
    sampler: Literal["random", "class_balanced"] = "random"
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
    # Labels for pre-training: "use" (those the data has) | "none" (hidden from the loss, for
    # self-supervised methods; evaluation still uses the labelled splits). A folder of images
    # without class folders has none.
    labels: Literal["use", "none"] = "use"
    # Only a seeded class-balanced fraction of the training images keeps its label (for
    # pre-training and for evaluation: kNN bank, probe); the rest count as unlabelled.
    labeled_fraction: float | None = None
    # Or exactly the images a text file names (one per line: class/file.jpg under the training
    # folder, or an absolute path; # starts a comment): imagefolder data only.
    labeled_list: str | None = None

    def problems(self, prefix: str = "data") -> list[str]:
        """This section's impossible values (the batch composition against ``optim`` and
        the views against the method are checked by :meth:`Config.problems`)."""
        from varcon.data import dataset_names, get_dataset
        from varcon.data.variants import check_variants

        p: list[str] = []
        names = dataset_names()
        spec = get_dataset(self.dataset) if self.dataset in names else None
        if spec is None:
            p.append(_not_registered(f"{prefix}.dataset", self.dataset, names))
        elif spec.needs_root and not self.root:
            p.append(f"{prefix}.root: required for {prefix}.dataset={self.dataset} (the "
                     "folder holding it)")
        if self.channels is not None and self.channels not in (1, 3):
            p.append(f"{prefix}.channels: 1 (grayscale) or 3 (RGB), got {self.channels!r}")
        elif (self.channels is not None and spec is not None and spec.channels is not None
              and self.channels != spec.channels):
            p.append(f"{prefix}.channels: {self.dataset} images have {spec.channels} "
                     f"channel(s); {prefix}.channels only chooses how imagefolder files are "
                     "decoded")
        if self.image_size is not None and self.image_size < 1:
            p.append(f"{prefix}.image_size: must be >= 1, got {self.image_size}")
        for key in ("mean", "std"):
            values = getattr(self, key)
            if values is not None and len(values) not in (1, 3):
                p.append(f"{prefix}.{key}: give 1 or 3 numbers, got {values}")
        if self.std is not None and any(s <= 0 for s in self.std):
            p.append(f"{prefix}.std: must be > 0, got {self.std}")
        if self.num_workers < 0:
            p.append(f"{prefix}.num_workers: must be >= 0, got {self.num_workers}")
        if self.views < 1:
            p.append(f"{prefix}.views: must be >= 1 (augmented views per image), got "
                     f"{self.views}")
        m = self.samples_per_class
        if self.sampler == "class_balanced" and m is None:
            p.append(f"{prefix}.sampler=class_balanced needs {prefix}.samples_per_class "
                     f"(images of each class per batch, e.g. {prefix}.samples_per_class=4)")
        elif self.sampler == "random" and m is not None:
            p.append(f"{prefix}.samples_per_class={m} is only used by the class-balanced "
                     f"sampler: set {prefix}.sampler=class_balanced, or remove "
                     f"{prefix}.samples_per_class")
        elif m is not None and m < 1:
            p.append(f"{prefix}.samples_per_class: must be >= 1, got {m}")
        for key in ("classes", "exclude_classes"):
            values = getattr(self, key)
            if values is None:
                continue
            if not values:
                p.append(f"{prefix}.{key}: give at least one class name or index, or null for "
                         "all")
            bad = [v for v in values if isinstance(v, bool) or not isinstance(v, (int, str))]
            if bad:
                p.append(f"{prefix}.{key}: entries must be class names or integer indices, "
                         f"got {bad}")
        if self.classes and self.exclude_classes:
            overlap = sorted({str(v) for v in self.classes}
                             & {str(v) for v in self.exclude_classes})
            if overlap:
                p.append(f"{prefix}.classes and {prefix}.exclude_classes both name {overlap}")
        if self.per_class is not None and self.per_class < 1:
            p.append(f"{prefix}.per_class: must be >= 1 (or null for all images), got "
                     f"{self.per_class}")
        f = self.labeled_fraction
        if f is not None and not 0 < f <= 1:
            p.append(f"{prefix}.labeled_fraction: a fraction in (0, 1] of the training images "
                     f"that keep their label (e.g. 0.1), or null for all; got {f}")
        if f is not None and self.labeled_list is not None:
            p.append(f"{prefix}.labeled_fraction and {prefix}.labeled_list both choose the "
                     "labeled images: set one of them")
        try:  # varcon.data.variants owns the rule (its message names data.rotations)
            check_variants(self.rotations, self.channel_orders)
        except ValueError as exc:
            p.append(str(exc))
        if self.channel_orders > 1 and self.augment == "simaugment" and _positive(
                self.augment_params, "grayscale_p", 0.2):
            p.append(f"{prefix}.channel_orders > 1 makes the channel order part of the label, "
                     f"and grayscale erases it: set {prefix}.augment_params.grayscale_p=0")
        # A horizontal flip of an image turned by 90 degrees is its mirror image turned by
        # 270: with quarter turns as labels, flips make two classes of each image
        # indistinguishable.
        if self.rotations == 4 and _positive(self.augment_params, "hflip_p", 0.5):
            p.append(f"{prefix}.rotations=4 makes the quarter turn part of the label, and a "
                     "horizontal flip turns a 90-degree rotation into a 270-degree one (of the "
                     f"mirror image): set {prefix}.augment_params.hflip_p=0, or use "
                     f"{prefix}.rotations=2")
        return p


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

    def problems(self, prefix: str = "model") -> list[str]:
        """The head size, and ``kwargs`` against the encoder's factory (which the model
        registry checks without building it)."""
        from varcon.models.registry import check_model_kwargs

        p: list[str] = []
        if self.head_dim < 1:
            p.append(f"{prefix}.head_dim: must be >= 1, got {self.head_dim}")
        reserved = sorted({"in_channels", "image_size"} & set(self.kwargs))
        if reserved:
            p.append(f"{prefix}.kwargs: {reserved} are set from the data; remove them from "
                     f"{prefix}.kwargs")
        try:
            check_model_kwargs(self.encoder,
                               {k: v for k, v in self.kwargs.items() if k not in reserved})
        except (TypeError, ValueError, ImportError) as exc:  # ImportError: timm/ without timm
            p.append(f"{prefix}: {exc}")
        if self.pretrained is not None and not self.pretrained.strip():
            p.append(f"{prefix}.pretrained: give a weights file (.safetensors or a torch state "
                     "dict) or null for random initialisation")
        return p


@dataclass
class LossConfig:
    temperature: float = 0.1  # tau1 (VarCon) / tau (SupCon)
    epsilon: float = 0.02  # VarCon's eps; 0 fixes tau2 = tau1
    detach_centroids: bool = True
    # exact: DDP yields the exact gradient of the global-batch loss.
    # per_rank: the authors' multi-GPU behaviour, 1/W of it (W = world size).
    gradient_scale: Literal["exact", "per_rank"] = "exact"
    # VarCon's centroids: batch (the batch's classes only, the paper) | ema (plus running
    # prototypes of every class seen so far: absent classes join the softmax as negatives)
    prototypes: Literal["batch", "ema"] = "batch"
    momentum: float = 0.9  # ema: weight of the old prototype in each update, in [0, 1)

    def problems(self, prefix: str = "loss") -> list[str]:
        """The losses' own checks (:mod:`varcon.losses.functional`), naming the config keys
        (``loss.prototypes=ema`` against the method: :meth:`Config.problems`)."""
        from varcon.losses.functional import check_hyperparameters, check_momentum

        p: list[str] = []
        t, e = self.temperature, self.epsilon
        if _delegate(p, f"{prefix}.temperature", "temperature",
                     lambda: check_hyperparameters(t)):
            _delegate(p, f"{prefix}.epsilon", "epsilon", lambda: check_hyperparameters(t, e))
        _delegate(p, f"{prefix}.momentum", "momentum", lambda: check_momentum(self.momentum))
        return p


@dataclass
class SSLConfig:
    """``method=varcon_ssl``'s pseudo-classes (:class:`varcon.losses.VarConSSLLoss`)."""

    num_prototypes: int = 100  # K pseudo-classes (<= optim.batch_size x data.views + queue)
    instance_weight: float = 1.0  # weight of VarCon with instance labels
    prototype_weight: float = 1.0  # weight of the pseudo-class term
    momentum: float = 0.9  # prototype update: weight of the old prototype, in [0, 1)
    sinkhorn_epsilon: float = 0.05  # entropic regularisation of the balanced codes
    sinkhorn_iterations: int = 3
    dead_after: int = 100  # steps without a win before a prototype counts as dead
    # earlier embeddings (global batch, newest first) the balanced codes also spread over,
    # as SwAV's queue: lets num_prototypes exceed optim.batch_size x data.views (0 = none)
    queue_length: int = 0

    def problems(self, prefix: str = "ssl") -> list[str]:
        """The loss's own checks, naming the config keys."""
        from varcon.losses.functional import check_momentum
        from varcon.losses.self_supervised.sinkhorn import check_sinkhorn
        from varcon.losses.self_supervised.varcon_ssl import (
            check_num_prototypes,
            check_queue_length,
            check_weights,
        )

        p: list[str] = []
        _delegate(p, f"{prefix}.num_prototypes", "num_prototypes",
                  lambda: check_num_prototypes(self.num_prototypes))
        iw, pw = self.instance_weight, self.prototype_weight
        if _delegate(p, f"{prefix}.instance_weight", "instance_weight",
                     lambda: check_weights(iw, 1.0)) and _delegate(
                p, f"{prefix}.prototype_weight", "prototype_weight",
                lambda: check_weights(1.0, pw)):
            _delegate(p, f"{prefix}.instance_weight", "", lambda: check_weights(iw, pw))
        _delegate(p, f"{prefix}.momentum", "momentum", lambda: check_momentum(self.momentum))
        _delegate(p, f"{prefix}.sinkhorn_epsilon", "sinkhorn_epsilon",
                  lambda: check_sinkhorn(self.sinkhorn_epsilon, 3))
        _delegate(p, f"{prefix}.sinkhorn_iterations", "sinkhorn_iterations",
                  lambda: check_sinkhorn(0.05, self.sinkhorn_iterations))
        if self.dead_after < 1:
            p.append(f"{prefix}.dead_after: must be >= 1 (steps), got {self.dead_after}")
        _delegate(p, f"{prefix}.queue_length", "queue_length",
                  lambda: check_queue_length(self.queue_length))
        return p


@dataclass
class OptimConfig:
    optimizer: Literal["sgd", "lars"] = "sgd"
    lr: float = 0.5  # base learning rate for the global batch
    momentum: float = 0.9
    weight_decay: float = 1e-4
    nesterov: bool = False
    batch_size: int = 1024  # global batch (split evenly over processes)
    epochs: int = 200
    warmup_epochs: int = 10
    warmup_from: float = 0.01  # lr at the first warm-up step, as a fraction of lr
    min_lr_ratio: float = 0.001  # cosine decays to lr * min_lr_ratio

    def problems(self, prefix: str = "optim") -> list[str]:
        """Rates, batch, epochs and the warm-up (which must be shorter than training)."""
        p: list[str] = []
        if not self.lr > 0:
            p.append(f"{prefix}.lr: must be > 0, got {self.lr}")
        if self.weight_decay < 0:
            p.append(f"{prefix}.weight_decay: must be >= 0, got {self.weight_decay}")
        if not 0 <= self.momentum < 1:
            p.append(f"{prefix}.momentum: must be in [0, 1), got {self.momentum}")
        if self.batch_size < 1:
            p.append(f"{prefix}.batch_size: must be >= 1, got {self.batch_size}")
        if self.epochs < 1:
            p.append(f"{prefix}.epochs: must be >= 1, got {self.epochs}")
        w, n = self.warmup_epochs, self.epochs
        if w < 0 or w >= n:
            p.append(f"{prefix}.warmup_epochs: must be >= 0 and shorter than training "
                     f"({prefix}.epochs = {n}), got {w}; set {prefix}.warmup_epochs="
                     f"{_warmup_fix(w, n)} (or fewer) with {prefix}.epochs={n}")
        if not 0 < self.warmup_from <= 1:
            p.append(f"{prefix}.warmup_from: must be in (0, 1], got {self.warmup_from}")
        if not 0 <= self.min_lr_ratio <= 1:
            p.append(f"{prefix}.min_lr_ratio: must be in [0, 1], got {self.min_lr_ratio}")
        return p


@dataclass
class TrainConfig:
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: AmpMode = "auto"  # auto (bf16/fp16 on CUDA, off on CPU) | off | bf16 | fp16
    deterministic: bool = False
    save_every: int = 0  # keep checkpoints/epoch_<k>.pt every k epochs (0: only last.pt)
    tau2_every: int = 1  # write tau2/epoch_<k>.npy every k epochs (0: never)
    max_nonfinite_steps: int = 10  # consecutive skipped steps before training stops
    log_every: int = 10  # TensorBoard scalar every k steps
    # auto (bar on a terminal, lines otherwise) | bar | lines | off
    progress: Literal["auto", "bar", "lines", "off"] = "auto"
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
    # experiment trackers (varcon.runtime.trackers): tensorboard | wandb | mlflow; their settings
    # are the tracking section. metrics.jsonl is written whatever this lists ([]: only it).
    loggers: list[str] = field(default_factory=lambda: ["tensorboard"])

    def problems(self, prefix: str = "train") -> list[str]:
        """Counts and intervals (``micro_batch`` against the batch: :meth:`Config.problems`),
        and the loggers: registered ones (:mod:`varcon.runtime.trackers`), installed."""
        from varcon.runtime.trackers.registry import logger_problems

        p: list[str] = logger_problems(self.loggers, f"{prefix}.loggers")
        for key in ("save_every", "tau2_every", "log_every", "max_steps_per_epoch",
                    "eval_every"):
            if getattr(self, key) < 0:
                p.append(f"{prefix}.{key}: must be >= 0, got {getattr(self, key)}")
        if self.micro_batch < 0:
            p.append(f"{prefix}.micro_batch: must be >= 0 (0: the whole batch at once), got "
                     f"{self.micro_batch}")
        if self.max_nonfinite_steps < 1:
            p.append(f"{prefix}.max_nonfinite_steps: must be >= 1, got "
                     f"{self.max_nonfinite_steps}")
        return p


@dataclass
class TrackingConfig:
    """Settings of the experiment trackers that ``train.loggers`` turns on (docs/training.md,
    "Experiment trackers"). Unset values fall back to the tools' environment variables."""

    run_name: str | None = None  # W&B / MLflow run name; None: the run directory's name
    wandb_project: str | None = None  # None: $WANDB_PROJECT, else "varcon"
    wandb_entity: str | None = None  # W&B user or team; None: $WANDB_ENTITY, else your default
    # None: $MLFLOW_TRACKING_URI, else a file store in the run directory (file:RUN_DIR/mlruns)
    mlflow_tracking_uri: str | None = None
    mlflow_experiment: str | None = None  # None: $MLFLOW_EXPERIMENT_NAME, else "varcon"

    def problems(self, prefix: str = "tracking") -> list[str]:
        """Names that are given must not be blank."""
        return [f"{prefix}.{f.name}: give a name, or null for the default; got {value!r}"
                for f in dataclasses.fields(self)
                if isinstance(value := getattr(self, f.name), str) and not value.strip()]


@dataclass
class LinearConfig:
    epochs: int = 100
    batch_size: int = 256
    lr: float = 5.0
    momentum: float = 0.9
    weight_decay: float = 0.0
    warmup_epochs: int = 0
    augment: Augment = "linear"  # training-split augmentation of the probe
    run_after_pretrain: bool = True

    def problems(self, prefix: str = "linear") -> list[str]:
        """The probe's epochs, batch, rate and warm-up."""
        p = _run_length_problems(prefix, self.epochs, self.batch_size, self.lr)
        return p + _warmup_problems(prefix, self.warmup_epochs, self.epochs)


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
    augment: Augment = "linear"  # training-split augmentation (the probe's by default)
    # probe: the head starts as <output>/linear_probe.pt (trained first when missing; LP-FT);
    # scratch: a new, randomly initialised head
    head_init: Literal["probe", "scratch"] = "probe"

    def problems(self, prefix: str = "finetune") -> list[str]:
        """Epochs, batch, the two rates, momentum, weight decay and warm-up."""
        p = _run_length_problems(prefix, self.epochs, self.batch_size, self.lr)
        if not self.encoder_lr_scale > 0:
            p.append(f"{prefix}.encoder_lr_scale: must be > 0 (the encoder's rate is "
                     f"{prefix}.lr times it; for a frozen encoder use varcon linear), got "
                     f"{self.encoder_lr_scale}")
        if not 0 <= self.momentum < 1:
            p.append(f"{prefix}.momentum: must be in [0, 1), got {self.momentum}")
        if self.weight_decay < 0:
            p.append(f"{prefix}.weight_decay: must be >= 0, got {self.weight_decay}")
        return p + _warmup_problems(prefix, self.warmup_epochs, self.epochs)


@dataclass
class EvalConfig:
    # encoder | head (kNN, clustering, few-shot; the probe: encoder)
    features: Literal["encoder", "head"] = "encoder"
    cache_features: bool = False  # keep extracted features in <output>/features/ (float16)
    batch_size: int = 256  # feature extraction batch (global)

    def problems(self, prefix: str = "eval") -> list[str]:
        """The feature-extraction batch."""
        if self.batch_size < 1:
            return [f"{prefix}.batch_size: must be >= 1, got {self.batch_size}"]
        return []


@dataclass
class KnnConfig:
    enabled: bool = True  # run after pre-training
    k: list[int] = field(default_factory=lambda: [20, 200])  # one number or a list
    temperature: float = 0.1

    def problems(self, prefix: str = "knn") -> list[str]:
        """The neighbour counts and the vote temperature."""
        p: list[str] = []
        if not self.k or any(k < 1 for k in self.k):
            p.append(f"{prefix}.k: give one or more integers >= 1, e.g. {prefix}.k=[20,200]; "
                     f"got {self.k}")
        if not self.temperature > 0:
            p.append(f"{prefix}.temperature: must be > 0, got {self.temperature}")
        return p


@dataclass
class ClusterConfig:
    enabled: bool = True  # run after pre-training
    algorithms: list[ClusterAlgorithm] = field(
        default_factory=lambda: ["kmeans", "agglomerative_ward", "agglomerative_average_cosine"]
    )
    max_samples: int = 10000  # class-balanced subsample above this (agglomerative is O(N^2))
    seed: int = 0

    def problems(self, prefix: str = "cluster") -> list[str]:
        """At least one algorithm (each a known one: checked by the parser), and a sample."""
        p: list[str] = []
        if not self.algorithms:
            p.append(f"{prefix}.algorithms: choose from "
                     f"{', '.join(typing.get_args(ClusterAlgorithm))}; got {self.algorithms}")
        if self.max_samples < 2:
            p.append(f"{prefix}.max_samples: must be >= 2, got {self.max_samples}")
        return p


@dataclass
class FewshotConfig:
    n_way: int = 5
    shots: list[int] = field(default_factory=lambda: [1, 5])
    n_query: int = 15
    episodes: int = 2000
    classifiers: list[FewshotClassifier] = field(default_factory=lambda: ["ncm", "logreg"])
    center: bool = False  # SimpleShot's CL2N: subtract the mean feature, then L2-normalise
    classes: list[Any] | None = None  # episodes only from these classes (names or indices)
    seed: int = 0

    def problems(self, prefix: str = "fewshot") -> list[str]:
        """Episode sizes and counts, shots, and at least one classifier."""
        p: list[str] = []
        for key in ("n_way", "n_query", "episodes"):
            if getattr(self, key) < 1:
                p.append(f"{prefix}.{key}: must be >= 1, got {getattr(self, key)}")
        if self.n_way < 2:
            p.append(f"{prefix}.n_way: an episode needs >= 2 classes, got {self.n_way}")
        if self.episodes < 2:
            p.append(f"{prefix}.episodes: a confidence interval needs >= 2 episodes, got "
                     f"{self.episodes}")
        if not self.shots or any(k < 1 for k in self.shots):
            p.append(f"{prefix}.shots: give one or more integers >= 1, e.g. [1,5]; got "
                     f"{self.shots}")
        if not self.classifiers:
            p.append(f"{prefix}.classifiers: choose from "
                     f"{', '.join(typing.get_args(FewshotClassifier))}; got {self.classifiers}")
        return p


@dataclass
class RobustnessConfig:
    root: str | None = None  # published CIFAR-10-C/-100-C or ImageNet-C folder; None: generate
    corruptions: list[str] | None = None  # None: the 15 ImageNet-C types
    severities: list[int] = field(default_factory=lambda: [1, 2, 3, 4, 5])
    max_images: int | None = None  # class-balanced subset of the test split per corruption
    seed: int = 0

    def problems(self, prefix: str = "robustness") -> list[str]:
        """Severities in 1..5 and the subset size."""
        p: list[str] = []
        if not self.severities or any(s not in (1, 2, 3, 4, 5) for s in self.severities):
            p.append(f"{prefix}.severities: integers from 1 to 5, got {self.severities}")
        if self.max_images is not None and self.max_images < 1:
            p.append(f"{prefix}.max_images: must be >= 1 (or null), got {self.max_images}")
        return p


# Sections other packages add (an evaluation protocol's settings, say): name -> dataclass.
_SECTIONS: Registry[type] = Registry("config section")


def _registered_sections() -> dict[str, Any]:
    return {name: cls() for name, cls in _SECTIONS.items()}


@dataclass
class Config:
    name: str = "run"
    method: str = "varcon"  # a name from varcon.methods.method_names(): varcon | supcon | ce
    seed: int = 0
    output_dir: str | None = None  # default runs/<name>-<timestamp>
    resume: str | None = None  # run directory (or checkpoint file) to continue
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    ssl: SSLConfig = field(default_factory=SSLConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    linear: LinearConfig = field(default_factory=LinearConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    knn: KnnConfig = field(default_factory=KnnConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    fewshot: FewshotConfig = field(default_factory=FewshotConfig)
    robustness: RobustnessConfig = field(default_factory=RobustnessConfig)
    # the sections added with register_config_section, by name: cfg.<name>, cfg.section(name)
    _sections: dict[str, Any] = field(default_factory=_registered_sections)

    def section(self, name: str) -> Any:
        """The section called ``name``: a built-in one (``"data"``, ``"optim"``, ...) or one
        added with :func:`register_config_section` (its defaults if this config was built
        before the section was registered)."""
        if name in _SECTIONS:
            if name not in self._sections:
                self._sections[name] = _SECTIONS.get(name)()
            return self._sections[name]
        if name in _BUILTIN_SECTIONS:
            return getattr(self, name)
        raise KeyError(f"no config section {name!r}; sections: "
                       f"{', '.join(config_sections())}")

    if not typing.TYPE_CHECKING:  # type checkers keep flagging misspelt attributes

        def __getattr__(self, name: str) -> Any:
            if name in _SECTIONS:  # only reached for names that are not attributes
                return self.section(name)
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

        def __setattr__(self, name: str, value: Any) -> None:
            if name in _SECTIONS:
                self._sections[name] = value
            else:
                object.__setattr__(self, name, value)

    def problems(self) -> list[str]:
        """Every impossible value: each section's own (its ``problems`` method), then the
        rules between sections. Empty for a valid config."""
        p: list[str] = []
        for name in config_sections():
            check = getattr(self.section(name), "problems", None)
            if check is not None:
                p.extend(check(name))
        p.extend(self._cross_section_problems())
        return p

    def validate(self) -> None:
        """Raise :class:`ConfigError` listing every problem (:meth:`problems`), if any."""
        problems = self.problems()
        if problems:
            raise ConfigError(problems)

    def _cross_section_problems(self) -> list[str]:
        """The rules that span sections: the method (a registered one, its views and its
        own rules), the prototypes, the probe's augmentation, the batch composition."""
        from varcon.methods import get_method, method_names

        p: list[str] = []
        d, o = self.data, self.optim
        if self.method not in method_names():
            p.append(_not_registered("method", self.method, method_names()))
        else:
            spec = get_method(self.method)
            if spec.multi_view and d.views == 1:
                p.append(f"data.views: contrastive methods need >= 2 views (method="
                         f"{self.method}), got {d.views}")
            p.extend(spec.check(self))
            p.extend(_label_problems(self, spec.labels))
        if self.loss.prototypes == "ema" and self.method != "varcon":
            p.append(f"loss.prototypes: 'ema' applies to method=varcon only (got method="
                     f"{self.method}); set loss.prototypes=batch, or method=varcon")
        if d.rotations == 4 and self.linear.augment != "eval":
            p.append(f"data.rotations=4: the probe's training augmentation linear.augment="
                     f"{self.linear.augment} flips images, which confuses 90- and 270-degree "
                     "classes: set linear.augment=eval")
        # the global batch against data.samples_per_class and train.micro_batch (the
        # per-process batch and the class counts are checked when training starts)
        batch, m, k = o.batch_size, d.samples_per_class, self.train.micro_batch
        if d.sampler == "class_balanced" and m is not None and m >= 1 and batch >= 1 and (
                batch % m):
            p.append(f"data.samples_per_class={m} must divide optim.batch_size={batch} (each "
                     f"batch holds batch_size / samples_per_class whole classes): use a batch "
                     f"of {max(batch // m, 1) * m} or {-(-batch // m) * m}, or a divisor of "
                     f"{batch}")
        if k > batch >= 1:
            p.append(f"train.micro_batch={k} is larger than the batch (optim.batch_size="
                     f"{batch}): use a divisor of {batch}, or 0 for the whole batch at once")
        elif k > 0 and batch >= 1 and batch % k:
            p.append(f"train.micro_batch={k} must divide optim.batch_size={batch} (equal "
                     f"chunks): use a divisor of {batch}, e.g. "
                     f"{_largest_divisor_at_most(batch, k)}")
        return p


def _label_problems(cfg: Config, use: str) -> list[str]:
    """``data.labels``, ``data.labeled_fraction``/``labeled_list``, the sampler and the ``ssl``
    section against
    what the method does with labels (``MethodSpec.labels``)."""
    p: list[str] = []
    d = cfg.data
    if d.labels == "none" and use == "required":
        p.append(f"data.labels=none: method={cfg.method} is supervised and needs the labels; "
                 "use method=simclr or method=varcon_ssl, or data.labels=use")
    partial = d.labeled_fraction is not None or d.labeled_list is not None
    if d.sampler == "class_balanced" and (use != "required" or partial):
        p.append(f"data.sampler=class_balanced builds batches from the labels, which "
                 f"method={cfg.method} with these data settings does not have for every "
                 "image: use data.sampler=random")
    changed = [f"ssl.{f.name}={getattr(cfg.ssl, f.name)!r}" for f in dataclasses.fields(SSLConfig)
               if getattr(cfg.ssl, f.name) != f.default]
    if changed and cfg.method != "varcon_ssl":
        p.append(f"{', '.join(changed)}: the ssl section is used by method=varcon_ssl only (got "
                 f"method={cfg.method}); remove it, or set method=varcon_ssl")
    return p


_BUILTIN_SECTIONS = tuple(f.name for f in dataclasses.fields(Config)
                          if f.name != "_sections" and isinstance(f.default_factory, type))


def _largest_divisor_at_most(n: int, k: int) -> int:
    """The largest divisor of ``n`` that is <= ``k`` (searching 10,000 candidates; else 1)."""
    return next((d for d in range(k, max(k - 10_000, 0), -1) if n % d == 0), 1)


def validate_config(cfg: Config) -> None:
    """Reject impossible values before any work starts, listing all problems
    (:meth:`Config.validate`)."""
    cfg.validate()


def config_sections() -> tuple[str, ...]:
    """The names of the config's sections: the built-in ones, then the registered ones."""
    return _BUILTIN_SECTIONS + _SECTIONS.names()


def register_config_section(name: str, cls: type, *, overwrite: bool = False) -> type:
    """Add the dataclass ``cls`` as the top-level config section ``name``.

    :class:`Config` then reads ``name.key=value`` overrides and a ``name:`` mapping in YAML
    (each field typed and checked like the built-in ones, ``Literal`` choices included),
    validates it with ``cls.problems(prefix)`` when the class defines that method, keeps it
    in :func:`config_to_dict` (so ``config.yaml`` and checkpoints hold it) and returns it as
    ``cfg.<name>`` or ``cfg.section(name)``. Every field needs a default.

    Raises ``ValueError`` for a name that is not an identifier, or that clashes with a
    field or method of :class:`Config` or with a section registered before (unless
    ``overwrite``), and ``TypeError`` if ``cls`` is not a dataclass.
    """
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise TypeError(f"config section {name!r}: expected a dataclass, got {cls!r}")
    if not isinstance(name, str) or not name.isidentifier() or name.startswith("_"):
        raise ValueError(f"a config section name must be an identifier not starting with '_', "
                         f"got {name!r}")
    if name in {f.name for f in dataclasses.fields(Config)} or hasattr(Config, name):
        raise ValueError(f"config section {name!r} clashes with Config.{name}; choose "
                         "another name")
    try:
        cls()
    except TypeError as exc:
        raise TypeError(f"config section {name!r}: every field of {cls.__name__} needs a "
                        f"default ({exc})") from None
    _field_types(cls)  # annotations must resolve
    return _SECTIONS.register(name, cls, overwrite=overwrite)


def unregister_config_section(name: str) -> None:
    """Remove a section added with :func:`register_config_section` (tests, plugins)."""
    _SECTIONS.unregister(name)


# ----------------------------------------------------------------------------- parsing


def _field_types(cls: type) -> dict[str, Any]:
    """The settable fields of ``cls`` and their types (for :class:`Config`: its sections,
    the registered ones included)."""
    types_ = {k: v for k, v in typing.get_type_hints(cls).items() if not k.startswith("_")}
    if cls is Config:
        types_.update(_SECTIONS.items())
    return types_


def _valid_keys(cls: type, prefix: str = "") -> list[str]:
    keys = []
    for name, tp in _field_types(cls).items():
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
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
    """Check ``value`` against the annotation ``tp``; ints are accepted for floats, and a
    ``Literal[...]`` accepts only its choices."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], key, problems)
    if tp is Any:
        return value
    if origin is Literal:
        choices = typing.get_args(tp)
        if isinstance(value, bool) and not any(isinstance(c, bool) for c in choices):
            value = "on" if value else "off"  # YAML 1.1 reads a bare off/on as a boolean
        if not any(value == c and type(value) is type(c) for c in choices):
            problems.append(f"{key}: must be one of {', '.join(map(str, choices))}; got "
                            f"{value!r}")
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
    if typing.get_origin(tp) is Literal:
        return any(type(value) is type(c) for c in typing.get_args(tp))
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
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            kwargs[key] = _build(tp, value, f"{prefix}{key}.", problems)
        else:
            before = len(problems)
            coerced = _coerce(value, tp, prefix + key, problems)
            if len(problems) == before:  # a mistyped value keeps the default, so that
                kwargs[key] = coerced  # validation can still check everything else
    if cls is not Config:
        return cls(**kwargs)
    added = {k: kwargs.pop(k) for k in list(kwargs) if k in _SECTIONS}
    return Config(**kwargs, _sections={**_registered_sections(), **added})


def config_from_dict(data: dict[str, Any] | None, *, validate: bool = True) -> Config:
    """Build a :class:`Config` from nested plain data; raise :class:`ConfigError`
    listing every problem (unknown keys, wrong types and impossible values) at once."""
    problems: list[str] = []
    cfg = _build(Config, data or {}, "", problems)
    if validate:
        # Skip complaints about settings already reported as mistyped (they hold defaults).
        bad = {p.split(":")[0].split("[")[0] for p in problems}
        problems += [p for p in cfg.problems() if p.split(":")[0] not in bad]
    if problems:
        raise ConfigError(problems)
    return cfg


def config_to_dict(cfg: Config) -> dict[str, Any]:
    """Plain nested dict (only str/int/float/bool/None/list/dict): YAML- and
    ``weights_only``-safe. Registered sections follow the built-in ones."""
    data = dataclasses.asdict(cfg)
    del data["_sections"]
    for name in _SECTIONS.names():
        data[name] = dataclasses.asdict(cfg.section(name))
    return data


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
        key = _override_key(key)
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


def _override_key(key: str) -> str:
    """The dotted key of an override's left-hand side (``--optim.lr`` -> ``optim.lr``)."""
    key = key.strip()
    return key[2:] if key.startswith("--") else key


# The sections with a warm-up that must be shorter than their run (epochs, warmup_epochs).
_WARMUP_SECTIONS: tuple[tuple[str, type[OptimConfig | LinearConfig | FinetuneConfig]], ...] = (
    ("optim", OptimConfig), ("linear", LinearConfig), ("finetune", FinetuneConfig))


def fit_warmups(data: dict[str, Any], overrides: list[str]) -> tuple[dict[str, Any], list[str]]:
    """Fit each warm-up the user did not choose to a run they shortened.

    ``data`` is a config's plain data with ``overrides`` already applied
    (:func:`apply_overrides`). For ``optim``, ``linear`` and ``finetune``: when ``epochs`` was
    set more recently than ``warmup_epochs`` (an override sets epochs but not the warm-up, or
    the YAML file sets epochs and the warm-up is the default) and the warm-up is not shorter
    than the run, it becomes ``epochs // 10``, so ``varcon pretrain optim.epochs=3`` runs
    instead of failing validation. A warm-up set together with the epochs (both overrides, or
    both in the file) is left for validation to report. Returns the new data and one note per
    warm-up changed; ``data`` itself is not modified.
    """
    keys = {_override_key(item.partition("=")[0]) for item in overrides if "=" in item}

    def layer(section: str, key: str) -> int:  # 2: an override, 1: the file, 0: the default
        if section in keys or f"{section}.{key}" in keys:
            return 2
        values = data.get(section)
        return 1 if isinstance(values, dict) and key in values else 0

    out, notes = data, []
    for section, cls in _WARMUP_SECTIONS:
        if layer(section, "epochs") <= layer(section, "warmup_epochs"):
            continue
        values = data.get(section)
        given: dict[str, Any] = values if isinstance(values, dict) else {}
        epochs, warmup = given.get("epochs", cls.epochs), given.get("warmup_epochs",
                                                                    cls.warmup_epochs)
        if (not isinstance(epochs, int) or isinstance(epochs, bool)
                or not isinstance(warmup, int) or isinstance(warmup, bool)
                or epochs < 1 or warmup < epochs):
            continue  # fits already, or a mistake validation names
        fitted = epochs // 10
        if out is data:
            out = copy.deepcopy(data)
        out.setdefault(section, {})["warmup_epochs"] = fitted
        notes.append(f"{section}.warmup_epochs {warmup} -> {fitted} to fit {section}.epochs="
                     f"{epochs}; set {section}.warmup_epochs to choose")
    return out, notes


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
    overrides, fit the warm-ups the user did not set to shortened runs (:func:`fit_warmups`,
    printing a note for each), validate. Raises :class:`ConfigError` listing every problem."""
    data = read_yaml(resolve_config_path(path if path is not None else "digits"))
    data, notes = fit_warmups(apply_overrides(data, overrides or []), overrides or [])
    cfg = config_from_dict(data)
    if int(os.environ.get("RANK", "0")) == 0:  # one note under torchrun
        for note in notes:
            print(f"note: {note}", flush=True)
    return cfg


def save_config(cfg: Config, path: str | Path) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        yaml.safe_dump(config_to_dict(cfg), fh, sort_keys=False)

