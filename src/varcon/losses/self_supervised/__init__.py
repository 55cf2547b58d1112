"""Self-supervised losses: NT-Xent (SimCLR) and self-supervised VarCon, with the Sinkhorn
assignments and collapse diagnostics they use. Imports nothing of varcon outside
:mod:`varcon.losses`."""

from .diagnostics import effective_rank, marginal_entropy
from .ntxent import NTXentLoss, instance_labels, ntxent_loss
from .sinkhorn import sinkhorn_log
from .varcon_ssl import (
    PseudoClassTerms,
    VarConSSLLoss,
    VarConSSLStats,
    pseudo_class_loss,
    swapped_targets,
    varcon_ssl_loss,
)

__all__ = [
    "NTXentLoss",
    "PseudoClassTerms",
    "VarConSSLLoss",
    "VarConSSLStats",
    "effective_rank",
    "instance_labels",
    "marginal_entropy",
    "ntxent_loss",
    "pseudo_class_loss",
    "sinkhorn_log",
    "swapped_targets",
    "varcon_ssl_loss",
]
