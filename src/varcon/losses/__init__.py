"""Losses for supervised contrastive learning: VarCon and SupCon.

This subpackage imports nothing else from ``varcon``: copy it into your own project
or use it alone (``from varcon.losses import VarConLoss``).
"""

from . import functional
from .distributed import gather_batch
from .functional import VarConStats, supcon_loss, varcon_loss
from .supcon import SupConLoss
from .varcon import VarConLoss

__all__ = [
    "SupConLoss",
    "VarConLoss",
    "VarConStats",
    "functional",
    "gather_batch",
    "supcon_loss",
    "varcon_loss",
]
