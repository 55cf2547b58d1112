"""Signs of collapse in a self-supervised run, read from one epoch's statistics."""

from __future__ import annotations

import math
from typing import Any

__all__ = ["collapse_warnings"]

# Thresholds. Each names a state a healthy run leaves within its first epochs.
MIN_RANK_FRACTION = 0.05  # effective rank below 5% of the embedding dimension (and < 2)
MIN_ENTROPY_FRACTION = 0.5  # batch-marginal pseudo-class entropy below half of log K
MAX_DEAD_FRACTION = 0.5  # more than half of the prototypes never the most probable
STUCK_NLL_TOLERANCE = 0.02  # pseudo-class NLL within 2% of log K ...
STUCK_CONFIDENCE = 2.0  # ... and the target's probability below 2 / K: uniform posteriors
MAX_AT_BOUNDS = 0.95  # tau2 at either bound for nearly every sample (see below for K)


def collapse_warnings(cfg: Any, record: dict[str, Any]) -> list[str]:
    """Warnings for an epoch ``record`` (``metrics.jsonl`` keys) of ``simclr`` or
    ``varcon_ssl``: embeddings collapsed to a few directions, pseudo-classes collapsed onto
    a few prototypes, dead prototypes, a loss stuck at log K, tau2 pinned at its bounds.
    Each message says what was measured and what to try."""
    out: list[str] = []
    dim = cfg.model.head_dim
    rank = record.get("effective_rank")
    if rank is not None and rank < max(2.0, MIN_RANK_FRACTION * dim):
        out.append(
            f"embedding collapse: effective rank {rank:.2f} of {dim} dimensions (a collapsed "
            "encoder maps every image to nearly one direction). Try a lower optim.lr, "
            "more warm-up (optim.warmup_epochs), or, for varcon_ssl, a larger "
            "ssl.instance_weight")
    if cfg.method != "varcon_ssl":
        return out
    k = cfg.ssl.num_prototypes
    log_k = math.log(k)
    entropy = record.get("marginal_entropy")
    if entropy is not None and entropy < MIN_ENTROPY_FRACTION * log_k:
        out.append(
            f"pseudo-class collapse: the batch-marginal entropy is {entropy:.2f} nats against "
            f"log K = {log_k:.2f} (about {math.exp(entropy):.1f} of {k} prototypes in use). "
            "Try a smaller ssl.sinkhorn_epsilon (stronger balancing) or fewer prototypes")
    dead = record.get("dead_prototypes")
    if dead is not None and dead > MAX_DEAD_FRACTION * k:
        out.append(
            f"dead prototypes: {dead:.0f} of {k} were nobody's most probable pseudo-class for "
            f"{cfg.ssl.dead_after} steps. Try fewer prototypes (ssl.num_prototypes) or a "
            "lower ssl.momentum")
    nll, confidence = record.get("nll"), record.get("confidence_mean")
    if (nll is not None and confidence is not None and record.get("epoch", 1) >= 2
            and abs(nll - log_k) < STUCK_NLL_TOLERANCE * log_k
            and confidence < STUCK_CONFIDENCE / k):
        out.append(
            f"loss stuck at log K: the pseudo-class NLL is {nll:.3f} against log K = "
            f"{log_k:.3f} and the mean probability of the target {confidence:.4f} (1/K = "
            f"{1 / k:.4f}): every posterior is uniform, the prototypes separate nothing. "
            "If it persists, lower loss.temperature or raise ssl.prototype_weight")
    bounds = record.get("tau2_at_bounds")
    if (bounds is not None and confidence is not None and cfg.loss.epsilon > 0
            and record.get("epoch", 1) >= 2 and bounds > MAX_AT_BOUNDS):
        tau1, eps = cfg.loss.temperature, cfg.loss.epsilon
        if confidence >= 0.5:  # nearly every sample at one bound: the mean says which
            out.append(
                f"tau2 at its upper bound (tau1 + eps = {tau1 + eps:g}) for {100 * bounds:.0f}% "
                f"of the samples: nearly every posterior is certain (mean confidence "
                f"{confidence:.3f}), so the adaptive temperature no longer adapts and the "
                "pseudo-classes are trivial to predict. Try more prototypes "
                "(ssl.num_prototypes) or a higher loss.temperature")
        elif confidence < STUCK_CONFIDENCE / k:
            # Above 2/K the posteriors are sharper than uniform, only spread over many
            # prototypes: at K = 300 a healthy run starts with nearly every confidence below
            # 0.05 (measured: 100% at epoch 2, under 95% by epoch 6), tau2 stays near its
            # lower bound meanwhile, and that is no sign of collapse.
            out.append(
                f"tau2 at its lower bound (tau1 - eps = {tau1 - eps:g}) for "
                f"{100 * bounds:.0f}% of the samples: the posteriors are near uniform (mean "
                f"confidence {confidence:.4f}, 1/K = {1 / k:.4f}), so the adaptive temperature "
                "does not adapt. Try a lower loss.temperature or a higher "
                "ssl.prototype_weight")
    return out
