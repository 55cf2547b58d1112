"""Loss benchmark: VarCon forward + backward, ours against the authors' algorithm, fp32
and bf16, N up to 65,536 rows and C up to 10,000 classes (``benchmarks/bench_losses.py``'s
pieces: the same authors' re-implementation, batches, agreement check and timing).

bf16: features [N, D] in bfloat16 (what the head gives under autocast), every method
called inside ``torch.autocast(dtype=bfloat16)``: ours computes in float32 inside (it
switches autocast off), the authors' dense [N, C] algorithm runs its matmuls in bf16.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from benchmarks.bench_losses import (
    EPS,
    TAU1,
    authors_varcon,
    check_agreement,
    make_batch,
    peak_memory_mb,
    time_methods,
)
from varcon.losses import VarConLoss

from .common import Sizes

METHODS = ("ours", "ours_nc", "authors")


def _under_autocast(fn: Callable[[Tensor, Tensor], Tensor], device: torch.device,
                    dtype: torch.dtype | None) -> Callable[[Tensor, Tensor], Tensor]:
    if dtype is None:
        return fn

    def call(feats: Tensor, labels: Tensor) -> Tensor:
        with torch.autocast(device.type, dtype=dtype):
            return fn(feats, labels)

    return call


def run(s: Sizes) -> list[dict[str, Any]]:
    device = torch.device(s.device)
    rows = []
    for n in s.loss_n:
        for c in s.loss_c:
            base: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
                "ours": VarConLoss(temperature=TAU1, epsilon=EPS),
                "ours_nc": VarConLoss(temperature=TAU1, epsilon=EPS, num_classes=c),
                "authors": authors_varcon,
            }
            feats, labels = make_batch(n, c, s.loss_dim, device, seed=n + c)
            check = check_agreement(base, list(METHODS), feats, labels)  # exits on mismatch
            for dtype_name, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
                x = feats if dtype is None else \
                    feats.detach().to(dtype).requires_grad_()
                methods = {k: _under_autocast(f, device, dtype) for k, f in base.items()}
                ms = time_methods(methods, list(METHODS), x, labels, s.loss_warmup,
                                  s.loss_repeats, device)
                mem = ({k: round(peak_memory_mb(methods[k], x, labels, device), 1)
                        for k in METHODS} if device.type == "cuda" else None)
                with torch.no_grad():
                    values = {k: float(methods[k](x, labels)) for k in ("ours", "authors")}
                row = {"N": n, "C": c, "dtype": dtype_name,
                       "ms": {k: round(v, 3) for k, v in ms.items()},
                       "authors_over_ours": round(ms["authors"] / ms["ours"], 2),
                       "authors_over_ours_nc": round(ms["authors"] / ms["ours_nc"], 2),
                       "peak_mb": mem, "loss": values, "agreement_fp32": check}
                rows.append(row)
                print(f"N={n} C={c} {dtype_name}: " + ", ".join(
                    f"{k} {v:.2f} ms" for k, v in ms.items()), flush=True)
            del feats, labels, base
            if device.type == "cuda":
                torch.cuda.empty_cache()
    return rows
