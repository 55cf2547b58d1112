"""Independent float64 NumPy references for the VarCon and SupCon losses.

Written straight from the equations (VarCon: Wang et al. 2025, Eqs. 7, 8, 10-13;
SupCon: Khosla et al. 2020, Eq. 2, L_out), not from the implementation's algebra:
q and p are built as full [N, C] arrays and the KL is summed term by term.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


def _as64(x) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor
        x = x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


def _labels(y) -> np.ndarray:
    if hasattr(y, "detach"):
        y = y.detach().cpu().numpy()
    return np.asarray(y).astype(np.int64)


def logsumexp(a: np.ndarray, axis: int) -> np.ndarray:
    """Stable log(sum(exp(a))) along ``axis`` (rows that are all -inf give -inf)."""
    m = np.max(a, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore"):
        out = np.log(np.sum(np.exp(a - m), axis=axis, keepdims=True)) + m
    return np.squeeze(out, axis=axis)


def class_centroids(z, y) -> tuple[np.ndarray, np.ndarray]:
    """(classes, W): the sorted classes present and W[c] = normalize(mean of z_j in class c)."""
    z, y = _as64(z), _labels(y)
    classes = np.unique(y)
    w = np.stack([z[y == c].mean(axis=0) for c in classes])
    w = w / np.linalg.norm(w, axis=1, keepdims=True)
    return classes, w


@dataclass
class VarConRef:
    loss: np.ndarray  # [N] per-sample loss
    kl: np.ndarray
    nll: np.ndarray
    tau2: np.ndarray
    confidence: np.ndarray
    num_classes: int
    log_p: np.ndarray  # [N, C]
    log_q: np.ndarray  # [N, C]


def varcon_reference(
    z, y, tau1: float, eps: float, centroids=None, tau2_override=None
) -> VarConRef:
    """Per-sample VarCon loss.

    ``centroids`` = (classes, W) as returned by :func:`class_centroids`; by default they
    are computed from (z, y). Passing fixed centroids lets finite differences hold them
    constant (the detached-centroid gradient). ``tau2_override`` replaces Eq. 13 by
    fixed values (used only to show that a test can tell a detached tau2 apart).
    """
    z, y = _as64(z), _labels(y)
    classes, w = class_centroids(z, y) if centroids is None else centroids
    classes = np.asarray(classes)
    n, c = z.shape[0], len(classes)
    col = np.searchsorted(classes, y)
    assert np.all(classes[col] == y), "every label must have a centroid"
    onehot = np.zeros((n, c), dtype=bool)
    onehot[np.arange(n), col] = True

    # Eq. 8: p(c|z) = softmax_c(z . w_c / tau1), kept as log p.
    logits = z @ w.T / tau1
    log_p = logits - logsumexp(logits, axis=1)[:, None]
    conf = np.exp(log_p[onehot])

    # Eq. 13: confidence-adaptive temperature.
    tau2 = (tau1 - eps) + 2.0 * eps * conf
    if tau2_override is not None:
        tau2 = np.asarray(tau2_override, dtype=np.float64)
    a = 1.0 / tau2

    # Eqs. 10-12: unnormalised q is 1 off the true class and 1 + (e^a - 1) = e^a on it.
    # In log space: 0 off the true class, a on it; normalise by a row-wise logsumexp.
    log_q_un = np.where(onehot, a[:, None], 0.0)
    log_q = log_q_un - logsumexp(log_q_un, axis=1)[:, None]
    q = np.exp(log_q)

    # Eq. 7: KL(q || p) - log p(r|z), summed over the full [N, C] arrays.
    kl = np.sum(q * (log_q - log_p), axis=1)
    nll = -log_p[onehot]
    return VarConRef(
        loss=kl + nll,
        kl=kl,
        nll=nll,
        tau2=tau2,
        confidence=conf,
        num_classes=c,
        log_p=log_p,
        log_q=log_q,
    )


def supcon_reference(z, y, tau: float) -> np.ndarray:
    """Per-anchor SupCon L_out (Khosla et al. Eq. 2) with plain loops; 0 without positives."""
    z, y = _as64(z), _labels(y)
    n = z.shape[0]
    out = np.zeros(n)
    for i in range(n):
        others = [a for a in range(n) if a != i]
        positives = [p for p in others if y[p] == y[i]]
        if not positives:
            continue
        sims = np.array([z[i] @ z[a] / tau for a in others])
        log_denominator = logsumexp(sims, axis=0)
        total = 0.0
        for p in positives:
            total += -(z[i] @ z[p] / tau - log_denominator)
        out[i] = total / len(positives)
    return out


def supcon_mean(per_anchor: np.ndarray, y) -> float:
    """Mean over the anchors that have at least one positive (0 if none)."""
    y = _labels(y)
    has_pos = np.array([np.sum(y == yi) > 1 for yi in y])
    return float(per_anchor[has_pos].mean()) if has_pos.any() else 0.0


def central_difference(f, x: np.ndarray, h: float = 1e-6) -> np.ndarray:
    """Gradient of the scalar function ``f`` at ``x`` by central finite differences."""
    x = np.array(x, dtype=np.float64)
    grad = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"])
    for _ in it:
        idx = it.multi_index
        xp, xm = x.copy(), x.copy()
        xp[idx] += h
        xm[idx] -= h
        grad[idx] = (f(xp) - f(xm)) / (2 * h)
    return grad


def make_batch(labels, dim=8, *, seed=0, dtype=torch.float64, spread=1.0, normalise=True):
    """Features clustered around random class directions; ``spread`` scales the noise."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.as_tensor(labels, dtype=torch.long)
    num = int(labels.max()) + 1 if labels.numel() else 1
    directions = torch.randn(num, dim, generator=g, dtype=torch.float64)
    z = directions[labels] + spread * torch.randn(
        len(labels), dim, generator=g, dtype=torch.float64
    )
    if normalise:
        z = torch.nn.functional.normalize(z, dim=1)
    return z.to(dtype), labels
