"""Linear evaluation: a linear classifier trained on frozen encoder features.

The standard protocol of contrastive learning (SupCon, SimCLR, the VarCon paper): the
encoder is frozen, a single ``nn.Linear(out_dim, C)`` is trained with cross-entropy, SGD with
momentum and a cosine schedule on the training split, and top-1/top-5 accuracy is reported on
the test split after the last epoch. The probe reads the encoder output (e.g. 2048-d for
ResNet-50), never the projection head.

Two training inputs:
* ``linear.augment=eval`` (no augmentation): the training split is encoded once (shared with
  kNN, clustering and few-shot through the session) and the probe trains on those features;
* ``linear.augment=linear`` (the authors' protocol: random resized crop + flip): every epoch
  encodes freshly augmented images, with several processes under DDP (the loop of
  :mod:`varcon.evaluation.supervised`, which fine-tuning shares).
"""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from varcon.runtime.config import LinearConfig
from varcon.runtime.logger import Progress
from varcon.runtime.schedule import WarmupCosine

from .results import atomic_write_bytes, save_array, write_result
from .session import EvalSession
from .supervised import AugmentedTraining, train_on_augmented_images

__all__ = ["load_probe", "probe_accuracy", "run_linear", "run_linear_probe", "save_probe",
           "train_linear_probe", "train_probe_on_features"]


def _optimizer(classifier: nn.Module, lc: LinearConfig) -> torch.optim.Optimizer:
    return torch.optim.SGD(classifier.parameters(), lr=lc.lr, momentum=lc.momentum,
                           weight_decay=lc.weight_decay)


def train_probe_on_features(
    feats: torch.Tensor, labels: torch.Tensor, num_classes: int, lc: LinearConfig, *,
    seed: int = 0, device: str | torch.device = "cpu", progress_mode: str = "off",
) -> nn.Linear:
    """Train ``nn.Linear(D, num_classes)`` on fixed features ``[N, D]`` with labels ``[N]``.

    Mini-batches of ``lc.batch_size`` from a seeded permutation each epoch; cross-entropy;
    SGD(lr, momentum, weight_decay) with warm-up + cosine over ``lc.epochs``.
    """
    device = torch.device(device)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # the classifier's initialisation
    classifier = nn.Linear(feats.shape[1], num_classes).to(device)
    optimizer = _optimizer(classifier, lc)
    n = feats.shape[0]
    steps = max((n + lc.batch_size - 1) // lc.batch_size, 1)
    schedule = WarmupCosine(lc.lr, lc.epochs * steps, lc.warmup_epochs * steps)
    x_all, y_all = feats.to(device), labels.to(device)
    criterion = nn.CrossEntropyLoss()
    bar = Progress(lc.epochs, "linear probe", mode=progress_mode)
    for epoch in range(lc.epochs):
        order = torch.randperm(n, generator=gen).to(device)
        for step in range(steps):
            idx = order[step * lc.batch_size:(step + 1) * lc.batch_size]
            schedule.apply(optimizer, epoch * steps + step)
            loss = criterion(classifier(x_all[idx]), y_all[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        bar.update(loss=float(loss.detach()))
    bar.close()
    return classifier.eval()


def train_linear_probe(session: EvalSession) -> nn.Linear:
    """The probe of ``session``'s encoder on its training split, as ``cfg.linear`` says."""
    cfg, ctx, lc = session.cfg, session.ctx, session.cfg.linear
    if lc.augment == "eval":
        feats, labels = session.features("train", "encoder")
        return train_probe_on_features(feats, labels, session.num_classes, lc,
                                       seed=cfg.seed + 1, device=ctx.device,
                                       progress_mode=cfg.train.progress if ctx.is_main
                                       else "off")
    return _train_augmented(session)


def _train_augmented(session: EvalSession) -> nn.Linear:
    """Probe on freshly augmented images every epoch (DDP over processes); the frozen
    encoder's features are computed without gradients, in ``float32``."""
    cfg, ctx, lc, net = session.cfg, session.ctx, session.cfg.linear, session.net
    net.eval()
    torch.manual_seed(cfg.seed + 1)  # the classifier's initialisation
    classifier = nn.Linear(net.out_dim, session.num_classes).to(ctx.device)
    model: nn.Module = classifier
    if ctx.distributed:
        model = DistributedDataParallel(classifier)

    def forward(images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            inputs = net.encode(images).float()
        return model(inputs)

    settings = AugmentedTraining(
        epochs=lc.epochs, batch_size=lc.batch_size, lr=lc.lr, warmup_epochs=lc.warmup_epochs,
        augment=lc.augment, seed=cfg.seed + 1, desc="linear",
        lr_hint=f"lower linear.lr (now {lc.lr})")
    train_on_augmented_images(session, forward, _optimizer(classifier, lc), settings)
    return classifier.eval()


@torch.no_grad()
def probe_accuracy(classifier: nn.Module, feats: torch.Tensor, labels: torch.Tensor,
                   num_classes: int) -> dict[str, Any]:
    """Top-1/top-5 (percent) and the confusion matrix ``[C, C]`` (rows true, columns
    predicted) of ``classifier`` on features ``[N, D]``."""
    device = next(classifier.parameters()).device
    logits = torch.cat([classifier(chunk.to(device)).float().cpu()
                        for chunk in feats.split(4096)]) if len(feats) else torch.zeros(0, 1)
    k = min(5, num_classes)
    top = logits.topk(k, dim=1).indices
    hit = top.eq(labels[:, None])
    n = max(labels.numel(), 1)
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.long)
    confusion.index_put_((labels, top[:, 0]), torch.ones_like(labels), accumulate=True)
    return {"top1": 100.0 * float(hit[:, 0].sum()) / n,
            "top5": 100.0 * float(hit.any(1).sum()) / n, "n_test": int(labels.numel()),
            "confusion": confusion.numpy()}


def save_probe(session: EvalSession, classifier: nn.Linear, name: str = "linear_probe", *,
               results: dict[str, Any] | None = None) -> None:
    """``<output>/<name>.pt``: the classifier and what it was trained on (weights_only-safe).

    ``results`` (``top1``/``top5`` on the test split, percent) are kept beside the weights,
    so a later user of the probe (fine-tuning) can show and check its accuracy.
    """
    import io

    state = {"format": "varcon-probe", "weight": classifier.weight.detach().cpu(),
             "bias": classifier.bias.detach().cpu(), "num_classes": session.num_classes,
             "class_names": session.class_names, "features": "encoder",
             "checkpoint": session.checkpoint, "eval_dataset": session.context()["eval_dataset"]}
    for key in ("top1", "top5"):
        if results is not None and isinstance(results.get(key), (int, float)):
            state[key] = float(results[key])
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(session.out_dir / f"{name}.pt", buffer.getvalue())


def load_probe(path: Any) -> tuple[nn.Linear, dict[str, Any]]:
    """The classifier saved by ``varcon linear`` (``weights_only=True``)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("format") != "varcon-probe":
        raise ValueError(f"{path} is not a linear probe saved by `varcon linear`")
    weight = state["weight"]
    classifier = nn.Linear(weight.shape[1], weight.shape[0])
    with torch.no_grad():
        classifier.weight.copy_(weight)
        classifier.bias.copy_(state["bias"])
    return classifier.eval(), state


def run_linear(session: EvalSession, *, name: str = "linear", protocol: str = "linear",
               settings_extra: dict[str, Any] | None = None,
               results_extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train the probe, test it, write ``<name>.json``, ``<name>_probe.pt`` and
    ``<name>_confusion.npy`` (rank 0). Returns the results dict on every rank."""
    return run_linear_probe(session, name=name, protocol=protocol,
                            settings_extra=settings_extra, results_extra=results_extra)[0]


def run_linear_probe(session: EvalSession, *, name: str = "linear", protocol: str = "linear",
                     settings_extra: dict[str, Any] | None = None,
                     results_extra: dict[str, Any] | None = None
                     ) -> tuple[dict[str, Any], nn.Linear]:
    """:func:`run_linear` that also returns the trained classifier ``nn.Linear(out_dim, C)``
    (eval mode, on ``session.ctx.device``; the same on every rank): fine-tuning starts its
    head from it."""
    t0 = time.perf_counter()
    session.prepare_output()
    classifier = train_linear_probe(session)
    test_f, test_y = session.features("test", "encoder")
    result = probe_accuracy(classifier, test_f, test_y, session.num_classes)
    confusion = result.pop("confusion")
    result.update(results_extra or {})
    if session.ctx.is_main:
        lc = session.cfg.linear
        settings = {"epochs": lc.epochs, "batch_size": lc.batch_size, "lr": lc.lr,
                    "momentum": lc.momentum, "weight_decay": lc.weight_decay,
                    "warmup_epochs": lc.warmup_epochs, "augment": lc.augment,
                    "seed": session.cfg.seed + 1, **(settings_extra or {})}
        save_probe(session, classifier, f"{name}_probe", results=result)
        save_array(session.out_dir / f"{name}_confusion.npy", confusion)
        write_result(session.out_dir, protocol, name=name, results=result, settings=settings,
                     context=session.context("encoder"), seconds=time.perf_counter() - t0)
    return result, classifier
