"""VarCon: variational supervised contrastive learning.

``varcon.load_encoder(run_dir_checkpoint_or_export)`` rebuilds a trained encoder, with its
preprocessing as ``.transform`` (``varcon.load_trained``: encoder, head and description); the
losses are in :mod:`varcon.losses`. Sub-packages are imported on first use, so
``import varcon.losses`` stays light.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "load_encoder", "load_trained"]


def __getattr__(name: str) -> Any:
    if name in ("load_encoder", "load_trained"):
        from varcon.runtime import checkpoint

        return getattr(checkpoint, name)
    raise AttributeError(f"module 'varcon' has no attribute {name!r}")
