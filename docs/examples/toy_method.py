"""Add a training method to varcon from your own code: ``method=align_uniform``.

Alignment and uniformity (Wang & Isola, ICML 2020): pull the views of each image together
and spread all embeddings over the unit sphere, with no labels at all::

    align   = mean_i || z_i^(1) - z_i^(2) ||^2                  (the two views of image i)
    uniform = log mean_{i != j} exp(-t || z_i - z_j ||^2)        (t = 2, every pair of rows)
    loss    = align + uniform

A method is a ``MethodSpec``: a loss builder ``(cfg, num_classes) -> nn.Module`` and a
``compute(loss_module, outputs, labels) -> MethodOutput(loss, stats, samples)``. ``outputs``
are the projection head's unit-norm embeddings ``[B * V, D]`` (the V views of an image on
adjacent rows), ``labels`` ``[B * V]``. The engine averages each statistic over the epoch into
``metrics.jsonl`` and shows the ones named in ``progress`` on the progress bar; the training
step, checkpoints, resume, evaluation and reports need nothing else.

Under ``torchrun`` this toy loss sees each process's rows only (VarCon and SupCon gather the
global batch: see ``varcon.losses.gather_batch``).

Run: python docs/examples/toy_method.py [OUTPUT_DIR]   (CPU, about ten seconds)
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from varcon.methods import MethodOutput, MethodSpec, register_method


class AlignUniformLoss(nn.Module):
    """``forward(z [B * V, D], labels) -> (align, uniform)``, scalars (labels unused)."""

    def __init__(self, views: int = 2, t: float = 2.0) -> None:
        super().__init__()
        self.views, self.t = views, t

    def forward(self, z: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        per_image = z.view(-1, self.views, z.shape[-1])  # [B, V, D]
        align = (per_image[:, 0] - per_image[:, 1]).pow(2).sum(-1).mean()
        uniform = torch.pdist(z).pow(2).mul(-self.t).exp().mean().log()
        return align, uniform


def build_loss(cfg: Any, num_classes: int) -> nn.Module:
    return AlignUniformLoss(views=cfg.data.views)


def compute(loss_fn: nn.Module, outputs: Tensor, labels: Tensor) -> MethodOutput:
    align, uniform = loss_fn(outputs.float(), labels)
    return MethodOutput(loss=align + uniform,
                        stats={"align": align.detach(), "uniform": uniform.detach()},
                        samples={})


ALIGN_UNIFORM = MethodSpec(
    name="align_uniform",
    build_loss=build_loss,
    compute=compute,
    head="projection",  # unit-norm embeddings of model.head_dim (or "classifier": logits)
    multi_view=True,  # each image arrives as data.views augmented views
    progress={"align": "align"},
    description="alignment + uniformity on the hypersphere (Wang & Isola 2020), no labels",
)
register_method(ALIGN_UNIFORM)


def main(output_dir: str | Path | None = None) -> dict[str, Any]:
    """Pre-train the digits quickstart with the new method for 2 short epochs, then the usual
    kNN and linear probe; returns the summary."""
    from varcon.engine.pretrain import pretrain
    from varcon.runtime.config import load_config

    output_dir = Path(output_dir or tempfile.mkdtemp()) / "align-uniform"
    cfg = load_config(None, [  # the built-in digits quickstart, shortened
        "method=align_uniform", f"output_dir={output_dir}", "optim.epochs=2",
        "optim.warmup_epochs=0", "optim.batch_size=128", "train.max_steps_per_epoch=4",
        "train.progress=off", "linear.epochs=5", "cluster.enabled=false",
    ])
    summary = pretrain(cfg)
    print(f"align_uniform on digits: kNN@20 {summary['knn_top1@20']:.1f}%, "
          f"linear {summary['linear_top1']:.1f}% (2 short epochs) -> {output_dir}")
    return summary


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
