"""Weighted kNN classifier on features (Wu et al. 2018; as in SupCon / solo-learn)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

__all__ = ["knn_accuracy", "knn_classify", "knn_evaluate"]


def _check(train_feats: torch.Tensor, train_labels: torch.Tensor, test_feats: torch.Tensor,
           num_classes: int, k: int, temperature: float, chunk_size: int) -> None:
    if train_feats.ndim != 2 or test_feats.ndim != 2:
        raise ValueError(
            f"features must be 2-D, got {tuple(train_feats.shape)} and {tuple(test_feats.shape)}"
        )
    if train_feats.shape[1] != test_feats.shape[1]:
        raise ValueError(
            f"feature dims differ: train {train_feats.shape[1]} vs test {test_feats.shape[1]}"
        )
    if train_feats.shape[0] == 0:
        raise ValueError("knn needs at least one training sample")
    if train_labels.shape != (train_feats.shape[0],):
        raise ValueError(
            f"train_labels must have shape ({train_feats.shape[0]},), "
            f"got {tuple(train_labels.shape)}"
        )
    if num_classes < 1 or k < 1 or chunk_size < 1:
        raise ValueError(
            f"num_classes, k and chunk_size must be >= 1 (got {num_classes}, {k}, {chunk_size})"
        )
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if train_labels.numel() and (
        int(train_labels.min()) < 0 or int(train_labels.max()) >= num_classes
    ):
        raise ValueError(f"train_labels must lie in [0, {num_classes})")


def knn_classify(
    train_feats: torch.Tensor,
    train_labels: torch.Tensor,
    test_feats: torch.Tensor,
    *,
    num_classes: int,
    k: int = 200,
    temperature: float = 0.1,
    chunk_size: int = 1024,
) -> torch.Tensor:
    """Weighted-kNN class scores for each test row.

    Features are L2-normalised; the similarity is the cosine ``s``; each test row takes its
    ``min(k, N_train)`` most similar training rows, weights them by ``exp(s / temperature)`` and
    sums the weights per neighbour class. Test rows are processed ``chunk_size`` at a time, so
    memory is ``O(chunk_size * N_train)``.

    Shapes: ``train_feats [N_train, D]``, ``train_labels [N_train]`` (ints in
    ``[0, num_classes)``), ``test_feats [N_test, D]`` -> scores ``[N_test, num_classes]``
    (``float64``, or ``float32`` on devices without float64), on ``train_feats``' device.
    Weights are accumulated in float64 so ``exp(1/temperature)`` does not overflow for
    ``temperature`` down to ~0.0015.
    """
    train_labels = torch.as_tensor(train_labels)
    _check(train_feats, train_labels, test_feats, num_classes, k, temperature, chunk_size)
    device = train_feats.device
    acc_dtype = torch.float32 if device.type == "mps" else torch.float64
    work_dtype = torch.promote_types(train_feats.dtype, torch.float32)
    train = F.normalize(train_feats.to(work_dtype), dim=1)
    labels = train_labels.to(device=device, dtype=torch.long)
    k = min(int(k), train.shape[0])
    n_test = test_feats.shape[0]
    scores = torch.zeros(n_test, num_classes, dtype=acc_dtype, device=device)
    for start in range(0, n_test, chunk_size):
        chunk = test_feats[start : start + chunk_size].to(device=device, dtype=work_dtype)
        sim = F.normalize(chunk, dim=1) @ train.T  # [c, N_train]
        top_sim, top_idx = sim.topk(k, dim=1)  # [c, k]
        weights = (top_sim.to(acc_dtype) / temperature).exp()
        scores[start : start + chunk_size].scatter_add_(1, labels[top_idx], weights)
    return scores


def knn_accuracy(
    train_feats: torch.Tensor,
    train_labels: torch.Tensor,
    test_feats: torch.Tensor,
    test_labels: torch.Tensor,
    *,
    num_classes: int,
    k: int = 200,
    temperature: float = 0.1,
    chunk_size: int = 1024,
) -> dict[str, float]:
    """Top-1 / top-5 accuracy (percent) of ``knn_classify``.

    ``test_labels [N_test]``. ``top5`` counts a hit within the ``min(5, num_classes)`` best
    classes. Returns ``{"top1": float, "top5": float}``.
    """
    test_labels = torch.as_tensor(test_labels).reshape(-1)
    if test_feats.ndim != 2 or test_labels.numel() != test_feats.shape[0]:
        raise ValueError(
            f"test_labels ({test_labels.numel()}) must match test_feats rows "
            f"({tuple(test_feats.shape)})"
        )
    if test_labels.numel() == 0:
        raise ValueError("knn_accuracy needs at least one test sample")
    scores = knn_classify(train_feats, train_labels, test_feats, num_classes=num_classes, k=k,
                          temperature=temperature, chunk_size=chunk_size)
    top = scores.topk(min(5, num_classes), dim=1).indices
    hit = top.eq(test_labels.to(top.device, torch.long)[:, None])
    n = float(test_labels.numel())
    return {
        "top1": 100.0 * float(hit[:, 0].sum()) / n,
        "top5": 100.0 * float(hit.any(dim=1).sum()) / n,
    }


def knn_evaluate(
    train_feats: torch.Tensor,
    train_labels: torch.Tensor,
    test_feats: torch.Tensor,
    test_labels: torch.Tensor,
    *,
    num_classes: int,
    ks: Sequence[int] = (20, 200),
    temperature: float = 0.1,
    chunk_size: int = 1024,
) -> dict[str, dict[str, float]]:
    """Top-1 / top-5 weighted-kNN accuracy (percent) for several ``k`` in one pass.

    Same classifier as :func:`knn_classify`: cosine similarity ``s`` between L2-normalised
    rows, each of the ``min(k, N_train)`` nearest training rows votes ``exp(s / temperature)``
    for its class. Per chunk of ``chunk_size`` test rows the ``K = min(max(ks), N_train)``
    nearest neighbours are found once (sorted, most similar first) and each ``k`` uses the
    first ``min(k, N_train)`` of them, so the cost is one similarity matrix
    ``[chunk_size, N_train]`` per chunk whatever the number of ``k`` (never
    ``[N_test, N_train]``).

    Shapes: ``train_feats [N_train, D]``, ``train_labels [N_train]``, ``test_feats [N_test, D]``,
    ``test_labels [N_test]``. Returns ``{"top1": {str(k): acc}, "top5": {str(k): acc}}``;
    ``top5`` counts a hit within the ``min(5, num_classes)`` best classes. A ``k`` above
    ``N_train`` keeps its own key but uses every training row.
    """
    ks = [int(k) for k in ks]
    if not ks:
        raise ValueError("ks must name at least one k, e.g. ks=(20, 200)")
    if min(ks) < 1:
        raise ValueError(f"every k must be >= 1, got ks={ks}")
    train_labels = torch.as_tensor(train_labels)
    _check(train_feats, train_labels, test_feats, num_classes, max(ks), temperature, chunk_size)
    test_labels = torch.as_tensor(test_labels).reshape(-1)
    if test_labels.numel() != test_feats.shape[0]:
        raise ValueError(
            f"test_labels ({test_labels.numel()}) must match test_feats rows "
            f"({tuple(test_feats.shape)})"
        )
    if test_labels.numel() == 0:
        raise ValueError("knn_evaluate needs at least one test sample")
    device = train_feats.device
    acc_dtype = torch.float32 if device.type == "mps" else torch.float64
    work_dtype = torch.promote_types(train_feats.dtype, torch.float32)
    train = F.normalize(train_feats.to(work_dtype), dim=1)
    labels = train_labels.to(device=device, dtype=torch.long)
    test_labels = test_labels.to(device=device, dtype=torch.long)
    n_train, n_test = train.shape[0], test_feats.shape[0]
    k_max = min(max(ks), n_train)
    n_top = min(5, num_classes)
    hits1 = {k: 0 for k in ks}
    hits5 = {k: 0 for k in ks}
    for start in range(0, n_test, chunk_size):
        chunk = test_feats[start : start + chunk_size].to(device=device, dtype=work_dtype)
        sim = F.normalize(chunk, dim=1) @ train.T  # [c, N_train]
        # sorted=True: the first k columns are the k nearest neighbours, for every k <= k_max
        top_sim, top_idx = sim.topk(k_max, dim=1, sorted=True)
        del sim
        weights = (top_sim.to(acc_dtype) / temperature).exp()  # float64: exp(1/T) is large
        neighbour_labels = labels[top_idx]
        truth = test_labels[start : start + chunk_size, None]
        for k in set(ks):
            kk = min(k, n_train)
            scores = torch.zeros(chunk.shape[0], num_classes, dtype=acc_dtype, device=device)
            scores.scatter_add_(1, neighbour_labels[:, :kk], weights[:, :kk])
            hit = scores.topk(n_top, dim=1).indices.eq(truth)
            hits1[k] += int(hit[:, 0].sum())
            hits5[k] += int(hit.any(dim=1).sum())
    return {
        "top1": {str(k): 100.0 * hits1[k] / n_test for k in ks},
        "top5": {str(k): 100.0 * hits5[k] / n_test for k in ks},
    }
