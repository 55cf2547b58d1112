"""Fine-tuning: the encoder and a linear head trained end to end with cross-entropy.

The standard protocol beside the frozen linear probe (:mod:`varcon.evaluation.linear`): an
``nn.Linear(out_dim, C)`` on the encoder output (never the projection head); images
``[B, C, H, W]`` -> logits ``[B, num_classes]``; loss ``CE(head(encoder(x)), y)``.

The head starts as the trained linear probe (``finetune.head_init=probe``, the default: linear
probing then fine-tuning, LP-FT, Kumar et al. 2022, "Fine-Tuning can Distort Pretrained
Features and Underperform Out-of-Distribution"): ``<output>/linear_probe.pt`` when it exists
and fits (same feature dimension, classes and data; :func:`probe_mismatches`), else a probe is
trained first exactly as ``varcon linear`` would and its results written. The probe reads the
raw encoder features ``encoder(x)`` in eval mode (no normalisation, no BatchNorm of its own),
so ``FinetuneModel(encoder, probe)`` in eval mode gives the probe's logits before any step::

    logits_0(x) = W_probe @ encoder(x) + b_probe

A random head (``head_init=scratch``) sends large, random gradients into the pre-trained
encoder while it learns; a trained one does not.

SGD with momentum and weight decay, a linear warm-up + cosine schedule per step, and two rates:

    lr_head(t)    = lr(t)
    lr_encoder(t) = lr(t) * encoder_lr_scale          (default 0.1)

so the pre-trained features move slower than the head. The training split is augmented
with ``finetune.augment`` (default ``linear``, the augmented probe's: random crop with padding
+ flip up to 64 px, random resized crop + flip above). The encoder trains in train mode
(BatchNorm statistics update). Top-1/top-5 are reported on the
test split after the last epoch, with the per-epoch training loss and accuracy.

Under ``torchrun`` the model is wrapped in DDP (each rank a shard of every global batch of
``finetune.batch_size``), as the probe's augmented training is; on CUDA the forward pass
runs under bf16 autocast unless ``train.amp=off`` (fp16 with a gradient scaler where asked).
"""

from __future__ import annotations

import pickle
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from varcon.runtime.backend import autocast_dtype
from varcon.runtime.config import FinetuneConfig
from varcon.runtime.distributed import broadcast_object

from .linear import load_probe, probe_accuracy, run_linear_probe
from .results import read_result, save_array, write_result
from .session import EvalSession
from .supervised import AugmentedTraining, SupervisedDiverged, train_on_augmented_images

__all__ = ["PROBE_FILE", "FinetuneDiverged", "FinetuneModel", "ProbeMismatch",
           "finetune_param_groups", "head_from_probe_state", "initial_head", "probe_mismatches",
           "run_finetune", "train_finetune"]

PROBE_FILE = "linear_probe.pt"  # what `varcon linear` writes into the output folder


class FinetuneDiverged(SupervisedDiverged):
    """The fine-tuning loss became NaN or infinite (the learning rate is too high)."""


class ProbeMismatch(ValueError):
    """The saved linear probe was trained for other features, classes or data."""


class FinetuneModel(nn.Module):
    """``forward(x) = head(encoder(x))``: ``[N, C, H, W] -> [N, num_classes]`` logits."""

    def __init__(self, encoder: nn.Module, head: nn.Linear) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))


def finetune_param_groups(model: FinetuneModel, fc: FinetuneConfig) -> list[dict[str, Any]]:
    """Two SGD parameter groups: the encoder at ``lr * encoder_lr_scale``, the head at ``lr``.

    Each group carries ``lr_scale``, which :meth:`WarmupCosine.apply` multiplies into the
    scheduled rate, and ``name`` (``"encoder"``/``"head"``).
    """
    return [
        {"params": [p for p in model.encoder.parameters() if p.requires_grad],
         "lr": fc.lr * fc.encoder_lr_scale, "lr_scale": fc.encoder_lr_scale,
         "name": "encoder"},
        {"params": list(model.head.parameters()), "lr": fc.lr, "lr_scale": 1.0,
         "name": "head"},
    ]


def probe_mismatches(state: dict[str, Any], *, in_dim: int, class_names: list[str],
                     eval_dataset: str) -> list[str]:
    """Why a probe saved by ``varcon linear`` (:func:`~varcon.evaluation.linear.load_probe`'s
    state) cannot start the head of an encoder with ``in_dim``-d features on data with
    ``class_names`` (named ``eval_dataset``); empty when it can.

    Checked: the weight is ``[len(class_names), in_dim]``, the class names and their order
    (the probe's row ``c`` scores class ``c``), the features (``encoder``) and the data.
    """
    problems: list[str] = []
    weight = state["weight"]
    rows, cols = (int(n) for n in weight.shape)
    if cols != in_dim:
        problems.append(f"it reads {cols}-d features, this encoder gives {in_dim}-d")
    names = [str(n) for n in state.get("class_names") or []]
    if rows != len(class_names) or int(state.get("num_classes", rows)) != len(class_names):
        problems.append(f"it has {rows} classes, the data {len(class_names)}")
    elif names and names != list(class_names):
        first = next(i for i, (a, b) in enumerate(zip(names, class_names, strict=True))
                     if a != b)
        problems.append(f"its classes differ from the data's (class {first}: "
                        f"{names[first]!r} vs {class_names[first]!r})")
    if state.get("features", "encoder") != "encoder":
        problems.append(f"it reads {state.get('features')!r} features, not the encoder's")
    probe_data = state.get("eval_dataset")
    if probe_data is not None and probe_data != eval_dataset:
        problems.append(f"it was trained on {probe_data!r}, this fine-tuning uses "
                        f"{eval_dataset!r}")
    return problems


def head_from_probe_state(state: dict[str, Any]) -> nn.Linear:
    """``nn.Linear(D, C)`` holding a saved probe's ``weight [C, D]`` and ``bias [C]``: the
    same map as the probe, ``logits = W f + b`` on raw encoder features ``f`` (the probe
    applies no normalisation, so none is folded in)."""
    weight, bias = state["weight"], state["bias"]
    head = nn.Linear(int(weight.shape[1]), int(weight.shape[0]))
    with torch.no_grad():
        head.weight.copy_(weight)
        head.bias.copy_(bias)
    return head


def _probe_top1(path: Path, state: dict[str, Any]) -> float | None:
    """The probe's test top-1 when it was trained: kept in the probe file, or (older probes)
    in the ``linear.json`` beside it when that file names the same checkpoint."""
    if isinstance(state.get("top1"), (int, float)):
        return float(state["top1"])
    record_path = path.with_name("linear.json")
    if path.name != PROBE_FILE or not record_path.is_file():
        return None
    try:
        record = read_result(record_path)
    except ValueError:
        return None
    top1 = record.get("results", {}).get("top1")
    same = record.get("checkpoint") == state.get("checkpoint")
    return float(top1) if same and isinstance(top1, (int, float)) else None


def _read_probe(path: Path) -> dict[str, Any] | str | None:
    """The state of the probe at ``path`` with its recorded ``top1``, ``None`` when there is
    no file, or the error message when the file is not a probe (returned, not raised, so that
    rank 0 can hand it to every rank)."""
    if not path.is_file():
        return None
    try:
        _, state = load_probe(path)
    except (ValueError, OSError, RuntimeError, EOFError, pickle.UnpicklingError) as exc:
        return (f"cannot start the head from {path}: {exc}; remove it, or choose another "
                "--output-dir or finetune.head_init=scratch")
    state["recorded_top1"] = _probe_top1(path, state)
    return state


def initial_head(session: EvalSession) -> tuple[nn.Linear, dict[str, Any]]:
    """The head fine-tuning starts from, as ``finetune.head_init`` says, and settings that
    describe it (``head_init``; with a probe: ``probe`` (its file), ``probe_checkpoint``,
    ``probe_top1`` (its test top-1 when trained) and ``probe_trained_now``).

    ``probe``: ``<output>/linear_probe.pt`` when it exists (rank 0 reads it, every rank gets
    it); :class:`ProbeMismatch` names what differs and the fixes when it does not fit. When
    there is none, the probe is trained first with the ``linear`` settings and written as
    ``varcon linear`` writes it (``linear.json``, ``linear_probe.pt``,
    ``linear_confusion.npy``), so a later ``varcon linear`` or ``varcon robustness`` has it.
    ``scratch``: ``nn.Linear(out_dim, C)`` with PyTorch's default initialisation, seeded
    ``seed + 2``.
    """
    cfg, ctx = session.cfg, session.ctx
    out_dim, num_classes = int(session.net.out_dim), session.num_classes
    if cfg.finetune.head_init == "scratch":
        torch.manual_seed(cfg.seed + 2)  # the head's initialisation
        return nn.Linear(out_dim, num_classes), {"head_init": "scratch"}
    path = session.out_dir / PROBE_FILE
    state = broadcast_object(ctx, _read_probe(path) if ctx.is_main else None)
    if state is None:
        if ctx.is_main:
            print(f"note: no linear probe in {session.out_dir}: training it first "
                  f"(linear.epochs={cfg.linear.epochs}, linear.augment={cfg.linear.augment}), "
                  "as `varcon linear` would; fine-tuning starts its head from it",
                  flush=True)
        result, classifier = run_linear_probe(session)
        head = nn.Linear(out_dim, num_classes)
        with torch.no_grad():
            head.weight.copy_(classifier.weight.detach().cpu())
            head.bias.copy_(classifier.bias.detach().cpu())
        return head, {"head_init": "probe", "probe": str(path),
                      "probe_checkpoint": session.checkpoint, "probe_top1": result["top1"],
                      "probe_trained_now": True}
    if isinstance(state, str):
        raise ProbeMismatch(state)
    assert isinstance(state, dict)
    problems = probe_mismatches(state, in_dim=out_dim, class_names=session.class_names,
                                eval_dataset=session.context()["eval_dataset"])
    if problems:
        raise ProbeMismatch(
            f"the linear probe {path} does not fit this fine-tuning: {'; '.join(problems)}. "
            f"Retrain it with `varcon linear --checkpoint {session.checkpoint}` (with the "
            "same data overrides and --output-dir), fine-tune into another --output-dir (a "
            "probe is trained there first), or start from a new head with "
            "finetune.head_init=scratch")
    return head_from_probe_state(state), {
        "head_init": "probe", "probe": str(path), "probe_checkpoint": state.get("checkpoint"),
        "probe_top1": state.get("recorded_top1"), "probe_trained_now": False}


def train_finetune(session: EvalSession, head: nn.Linear | None = None
                   ) -> tuple[FinetuneModel, dict[str, list[float]]]:
    """Fine-tune ``session.net.encoder`` (in place) with a linear head on the session's
    training split, as ``cfg.finetune`` says.

    ``head``: where the head starts (e.g. :func:`initial_head`'s); ``None`` builds it as
    ``finetune.head_init`` says. Returns the model (eval mode) and the history
    ``{"train_loss": [...], "train_top1": [...]}``, one entry per epoch over every process's
    images.
    """
    cfg, ctx, fc = session.cfg, session.ctx, session.cfg.finetune
    encoder = session.net.encoder
    if head is None:
        head = initial_head(session)[0]
    model = FinetuneModel(encoder, head)
    if ctx.distributed and cfg.model.sync_batchnorm:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model = model.to(ctx.device).train()
    wrapped: nn.Module = model
    if ctx.distributed:
        device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
        wrapped = DistributedDataParallel(model, device_ids=device_ids)

    optimizer = torch.optim.SGD(finetune_param_groups(model, fc), lr=fc.lr,
                                momentum=fc.momentum, weight_decay=fc.weight_decay)
    per_rank = max(fc.batch_size // ctx.world_size, 1)
    settings = AugmentedTraining(
        epochs=fc.epochs, batch_size=fc.batch_size, lr=fc.lr, warmup_epochs=fc.warmup_epochs,
        augment=fc.augment, seed=cfg.seed + 2, desc="finetune",
        lr_hint=f"lower finetune.lr (now {fc.lr}) or finetune.encoder_lr_scale",
        # Full batches when there are enough images: a BatchNorm step on a 1-image remainder
        # would be noisy (or fail, for BatchNorm1d layers).
        drop_last=len(session.data.dataset) >= per_rank * ctx.world_size)
    history = train_on_augmented_images(session, wrapped, optimizer, settings,
                                        amp_dtype=autocast_dtype(cfg.train.amp, ctx.device),
                                        error=FinetuneDiverged)
    return model.eval(), history


def run_finetune(session: EvalSession, *, name: str = "finetune") -> dict[str, Any]:
    """Fine-tune, test, write ``<name>.json`` and ``<name>_confusion.npy`` (rank 0).

    The head starts as :func:`initial_head` says (the linear probe by default, trained and
    written first when missing). ``results`` also hold ``top1_at_start``: the test top-1 of
    encoder + head before any fine-tuning step (with a probe head: the probe's accuracy);
    ``settings`` say how the head was initialised (``head_init``, ``probe``,
    ``probe_top1``, ...). Trains ``session.net.encoder`` in place, so features the session
    extracted earlier (of the frozen encoder) are not reused afterwards: the test split is
    encoded afresh. Returns the results dict on every rank.
    """
    t0 = time.perf_counter()
    session.prepare_output()
    head, init = initial_head(session)
    # the model before any step: the frozen encoder's test features (shared with the probe
    # when it was trained just now) through the initial head
    test_f, test_y = session.features("test", "encoder")
    start_top1 = probe_accuracy(head.to(session.ctx.device), test_f, test_y,
                                session.num_classes)["top1"]
    _check_probe_reproduces(session, init, start_top1)
    model, history = train_finetune(session, head)
    # net.encode is the fine-tuned encoder now (same module, trained in place)
    test_f, test_y = session.encode_dataset(session.test_set(), "encoder",
                                            desc="features test/finetuned")
    result = probe_accuracy(model.head, test_f, test_y, session.num_classes)
    confusion = result.pop("confusion")
    # the last epoch's training figures; the per-epoch curves under "history"
    result.update({"top1_at_start": start_top1, "train_loss": history["train_loss"][-1],
                   "train_top1": history["train_top1"][-1], "history": history})
    if session.ctx.is_main:
        fc = session.cfg.finetune
        settings = {"epochs": fc.epochs, "batch_size": fc.batch_size, "lr": fc.lr,
                    "encoder_lr": fc.lr * fc.encoder_lr_scale,
                    "encoder_lr_scale": fc.encoder_lr_scale, "momentum": fc.momentum,
                    "weight_decay": fc.weight_decay, "warmup_epochs": fc.warmup_epochs,
                    "augment": fc.augment, "schedule": "cosine", "seed": session.cfg.seed + 2,
                    **init,
                    "world_size": session.ctx.world_size}
        save_array(session.out_dir / f"{name}_confusion.npy", confusion)
        write_result(session.out_dir, "finetune", name=name, results=result, settings=settings,
                     context=session.context("encoder"), seconds=time.perf_counter() - t0)
    return result


def _check_probe_reproduces(session: EvalSession, init: dict[str, Any],
                            start_top1: float) -> None:
    """Warn when a loaded probe scores much lower on this encoder than when it was trained
    (more than 1 point): it was probably trained on another checkpoint of the same shape."""
    recorded = init.get("probe_top1")
    if (not session.ctx.is_main or init.get("head_init") != "probe"
            or init.get("probe_trained_now") or recorded is None):
        return
    if abs(start_top1 - recorded) > 1.0:
        print(f"warning: the linear probe {init['probe']} scores {start_top1:.2f}% top-1 on "
              f"this encoder but {recorded:.2f}% when it was trained (on "
              f"{init.get('probe_checkpoint')}); it was probably trained on another "
              f"checkpoint: retrain it with `varcon linear --checkpoint {session.checkpoint}`",
              flush=True)
