"""Losses for contrastive learning: VarCon and SupCon (supervised), NT-Xent and
self-supervised VarCon (:mod:`varcon.losses.self_supervised`).

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
from .self_supervised import NTXentLoss, VarConSSLLoss, ntxent_loss, varcon_ssl_loss
from .supcon import SupConLoss
from .varcon import VarConLoss

__all__ = [
    "NTXentLoss",
    "SupConLoss",
    "VarConLoss",
    "VarConSSLLoss",
    "VarConStats",
    "ema_prototype_update_",
    "functional",
    "gather_batch",
    "ntxent_loss",
    "supcon_loss",
    "varcon_loss",
    "varcon_prototype_loss",
    "varcon_ssl_loss",
]
