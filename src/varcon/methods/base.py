"""What a training method is: a loss, the statistics it reports, the head and views it needs.

The training step (:mod:`varcon.engine.step`) knows nothing about any method: it asks the
method's :class:`MethodSpec` for a loss module (``build_loss``), calls ``compute`` on the
network's outputs and the batch's labels, and gets back a scalar loss and a dict of scalar
statistics (averaged over the epoch into ``metrics.jsonl``) plus per-sample values to save
(``tau2`` for VarCon). A new method is one file that builds a :class:`MethodSpec` and one
:func:`varcon.methods.register_method` call.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from torch import Tensor, nn

if TYPE_CHECKING:  # the config is passed in; methods never import the runtime
    from varcon.runtime.config import Config

__all__ = ["MethodOutput", "MethodSpec", "TrainingWarning"]


class TrainingWarning(UserWarning):
    """A sign that a run is failing, found in an epoch's statistics (e.g. collapse)."""


class MethodOutput(NamedTuple):
    """One step's result.

    * ``loss``: the scalar to back-propagate.
    * ``stats``: scalar tensors (detached), each averaged over the epoch's steps and written
      to ``metrics.jsonl`` under its key. A pair ``<x>_mean`` / ``<x>_sq`` (the batch mean of
      x and of x²) becomes ``<x>_mean`` / ``<x>_std`` (the standard deviation over samples).
    * ``samples``: per-sample tensors ``[N]`` saved to ``RUN_DIR/<key>/epoch_<k>.npy`` every
      ``train.tau2_every`` epochs (VarCon's ``tau2``).
    """

    loss: Tensor
    stats: dict[str, Tensor]
    samples: dict[str, Tensor]


@dataclass(frozen=True)
class MethodSpec:
    """A training method.

    Attributes:
        name: the ``method=`` value.
        build_loss: ``(cfg, num_classes) -> nn.Module``; the module's buffers (if any) are
            checkpointed and restored with the run, and restored on a skipped step.
        compute: ``(loss_module, outputs [N, D], labels [N]) -> MethodOutput``; ``outputs``
            are the head's outputs for every view (views of one image on adjacent rows),
            ``labels`` repeated per view.
        head: ``"projection"`` (unit-norm embeddings, ``model.head_dim``) or
            ``"classifier"`` (logits over the training classes).
        multi_view: whether each image arrives as ``data.views`` augmented views (contrastive
            methods) or as one (cross-entropy).
        progress: stat keys shown on the progress bar, with their short names.
        validate: ``cfg -> [problems]``: rules on other sections this method imposes.
        description: one line for ``varcon --help`` and the docs.
        labels: what the method does with the training labels: ``"required"`` (supervised:
            it trains on labelled images only), ``"optional"`` (it uses the labels it gets;
            unlabelled images arrive with label -1) or ``"ignored"`` (self-supervised).
        diagnose: ``(cfg, epoch record) -> [warnings]``, called after every epoch on the
            main process: signs of a failing run read from the epoch's statistics (e.g.
            collapse of a self-supervised method).
    """

    name: str
    build_loss: Callable[[Config, int], nn.Module]
    compute: Callable[[nn.Module, Tensor, Tensor], MethodOutput]
    head: Literal["projection", "classifier"] = "projection"
    multi_view: bool = True
    progress: dict[str, str] = field(default_factory=dict)
    validate: Callable[[Config], list[str]] | None = None
    description: str = ""
    labels: Literal["required", "optional", "ignored"] = "required"
    diagnose: Callable[[Config, dict[str, Any]], list[str]] | None = None

    def check(self, cfg: Any) -> list[str]:
        """The problems :attr:`validate` finds in ``cfg`` (none without a hook)."""
        return list(self.validate(cfg)) if self.validate is not None else []

    def warnings(self, cfg: Any, record: dict[str, Any]) -> list[str]:
        """What :attr:`diagnose` finds wrong in one epoch's record (nothing without a hook)."""
        return list(self.diagnose(cfg, record)) if self.diagnose is not None else []
