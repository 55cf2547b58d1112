"""One training step: a batch in, the loss and the method's statistics out (device tensors).

The step knows no method by name: the run's :class:`~varcon.methods.MethodSpec` computes the
loss and its statistics from the head's outputs.

No host-device synchronisation: on a GPU the host queues step after step while the device
works, so nothing in a step waits for a result. A non-finite loss (on any rank) is decided
on the device, the way the GradScaler decides ``found_inf``: the update runs anyway and is
then undone exactly, ``torch.where(bad, saved, new)``, for the parameters, the optimiser's
state and every buffer the forward pass wrote (BatchNorm running statistics, the loss's
class prototypes). A step that was not bad keeps its new values bit for bit. The host reads
the flags later (:class:`StepResult`, read every ``train.log_every`` steps by the loop).

Two cases read the flag at once (one synchronisation): a step that creates optimiser state
(the first step, whose momentum buffers did not exist before it, so there is nothing to
restore them to), and fp16 autocast, whose GradScaler reads its ``found_inf`` itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from varcon.runtime.distributed import all_reduce_sum

from .micro_batch import encode_for_loss
from .state import RunState

__all__ = ["StepResult", "TensorSnapshot", "train_step"]


@dataclass
class StepResult:
    """One step, on the device: ``values`` ``[1 + S]`` float32, the loss then the method's S
    statistics named by ``keys``; ``flags`` ``[2]``: whether the loss was non-finite (on
    some rank: the step was undone) and, with several processes, how many ranks asked to
    stop; ``samples``: per-sample tensors (VarCon's tau2)."""

    values: Tensor
    keys: tuple[str, ...]
    flags: Tensor
    samples: dict[str, Tensor]

    @property
    def bad(self) -> Tensor:
        """bool scalar on the device: the step was skipped."""
        return self.flags[0] > 0


class TensorSnapshot:
    """A copy of some tensors, one flat buffer per dtype and device (a few kernels however
    many tensors), put back where a device-side condition holds: ``restore_where(bad)``
    sets every tensor to ``where(bad, saved, current)``, exactly its saved or its current
    value."""

    def __init__(self, tensors: Iterable[Tensor]) -> None:
        groups: dict[tuple[torch.dtype, torch.device], list[Tensor]] = {}
        for t in tensors:
            groups.setdefault((t.dtype, t.device), []).append(t)
        self.groups = list(groups.values())
        self.saved = [_flat(group) for group in self.groups]

    def restore_where(self, condition: Tensor) -> None:
        with torch.no_grad():
            for group, saved in zip(self.groups, self.saved, strict=True):
                chosen = torch.where(condition.to(saved.device), saved, _flat(group))
                parts = [p.view(t.shape) for p, t in
                         zip(chosen.split([t.numel() for t in group]), group, strict=True)]
                torch._foreach_copy_(group, parts)


def _flat(tensors: list[Tensor]) -> Tensor:
    return torch.cat([t.detach().reshape(-1) for t in tensors])


def _optimizer_state(optimizer: torch.optim.Optimizer) -> list[Tensor]:
    return [v for state in optimizer.state.values() for v in state.values()
            if isinstance(v, Tensor)]


def _scaler_state(scaler: torch.amp.GradScaler) -> list[Tensor]:
    if not scaler.is_enabled():
        return []
    return [t for t in (getattr(scaler, "_scale", None), getattr(scaler, "_growth_tracker", None))
            if isinstance(t, Tensor)]


def train_step(run: RunState, model: nn.Module, images: Tensor, labels: Tensor, *,
               stop_requested: bool = False) -> StepResult:
    """Forward, loss, backward and optimiser step on one batch, undone on the device when
    the loss is non-finite: ``images`` ``[B, V, C, H, W]`` (V views) or ``[B, C, H, W]``,
    ``labels`` ``[B]``. ``stop_requested`` (this rank was signalled) rides on the all-reduce
    of the non-finite flag with several processes."""
    cfg, ctx = run.cfg, run.ctx
    images = run.train_set.finish(images.to(ctx.device, non_blocking=True))
    labels = labels.to(ctx.device, non_blocking=True)
    views = images.shape[1] if images.dim() == 5 else 1  # rows per image
    if images.dim() == 5:  # [B, V, C, H, W] -> B*V rows, labels repeated per view
        labels = labels.repeat_interleave(images.shape[1])
        images = images.flatten(0, 1)
    images = images.contiguous(memory_format=run.memory_format)

    # What the forward pass writes (BatchNorm statistics, class prototypes), to undo it.
    buffers = TensorSnapshot([*run.net.buffers(), *run.loss_fn.buffers()])
    # train.micro_batch: encoded in chunks without activations, back-propagated chunk by
    # chunk after the loss (gradient caching, engine/micro_batch.py)
    outputs, backward = encode_for_loss(model, images, cfg.train.micro_batch * views,
                                        amp_dtype=run.amp_dtype)
    out = run.method.compute(run.loss_fn, outputs, labels)
    values = torch.stack([out.loss.detach().float(), *(v.float() for v in out.stats.values())])
    # a fill kernel, not a copy from the host: nothing waits
    flags = torch.stack([(~torch.isfinite(values[0])).float(),
                         values.new_full((), float(stop_requested))])
    if ctx.distributed:  # every rank skips alike (DDP would hang otherwise)
        all_reduce_sum(ctx, flags)
    bad = flags[0] > 0

    run.optimizer.zero_grad(set_to_none=True)
    backward(run.scaler.scale(out.loss))
    state_before = {id(v) for v in _optimizer_state(run.optimizer)}
    parameters = TensorSnapshot([*run.net.parameters(), *_optimizer_state(run.optimizer),
                                 *_scaler_state(run.scaler)])
    run.scaler.step(run.optimizer)
    run.scaler.update()
    buffers.restore_where(bad)
    parameters.restore_where(bad)
    if any(id(v) not in state_before for v in _optimizer_state(run.optimizer)) and bool(bad):
        # state created by this (skipped) step has no earlier value: drop it, as if the
        # step had not run (a synchronisation, on the steps that create state only)
        for state in run.optimizer.state.values():
            for key in [k for k, v in state.items() if isinstance(v, Tensor)
                        and id(v) not in state_before]:
                del state[key]
    return StepResult(values, ("loss", *out.stats), flags, out.samples)
