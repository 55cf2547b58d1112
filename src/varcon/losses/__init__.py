"""Losses for supervised contrastive learning: VarCon and SupCon.

This subpackage imports nothing else from ``varcon``: copy it into your own project
or use it alone (``from varcon.losses import VarConLoss``).
"""

from . import functional
from .distributed import gather_batch
from .functional import (
    VarConStats,
    ema_prototype_update_,
    supcon_loss,
    varcon_loss,
    varcon_prototype_loss,
)
from .supcon import SupConLoss
from .varcon import VarConLoss

__all__ = [
    "SupConLoss",
    "VarConLoss",
    "VarConStats",
    "ema_prototype_update_",
    "functional",
    "gather_batch",
    "supcon_loss",
    "varcon_loss",
    "varcon_prototype_loss",
]
