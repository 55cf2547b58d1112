"""VarCon: variational supervised contrastive learning.

``varcon.load_encoder(run_dir_checkpoint_or_export)`` rebuilds a trained encoder, with its
preprocessing as ``.transform``; the losses are in :mod:`varcon.losses`. Sub-packages are
imported on first use, so ``import varcon.losses`` stays light.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "load_encoder"]


def __getattr__(name: str) -> Any:
    if name == "load_encoder":
        from varcon.models.checkpoint import load_encoder

        return load_encoder
    raise AttributeError(f"module 'varcon' has no attribute {name!r}")
