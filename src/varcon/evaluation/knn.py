"""Weighted kNN classifier on features (Wu et al. 2018; as in SupCon / solo-learn)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

__all__ = ["knn_accuracy", "knn_classify", "knn_evaluate"]

# Rows of the training set compared with a chunk of test rows at once: the similarity block is
# [chunk_size, TRAIN_CHUNK] (1024 x 65,536 float32 = 256 MB) and the normalised training rows
# [TRAIN_CHUNK, D] (512 MB at D = 2048), whatever N_train (1.28M at ImageNet-1K: unchunked,
# 5.2 GB of similarities per test chunk plus a 10.5 GB float32 copy of the training features).
TRAIN_CHUNK = 65_536


class _Neighbours:
    """The ``k`` most similar training rows of normalised query rows, by cosine similarity.

    A training set of at most ``train_chunk_size`` rows is normalised once and compared in one
    matmul (as before chunking existed). A larger one is read ``train_chunk_size`` rows at a
    time, each block normalised on the fly (row-wise, so the same values as normalising the
    whole set), and a running top-k is kept: the best ``k`` so far (earlier rows first) are
    concatenated with the block's best ``k`` and the top ``k`` of those kept (every block is
    ``train_chunk_size`` rows: the last one overlaps the one before). So the device
    never holds more than one block of normalised rows and one ``[c, train_chunk_size]``
    similarity block beyond ``train_feats`` itself. The similarities are the same dot products
    (bit-equal wherever BLAS multiplies a block as it multiplies the whole matrix, as tested
    from 16 rows up; a block of a row or a few may differ in the last bit), so the neighbours
    and their order are those of one ``topk`` over all rows, up to the order ``torch.topk``
    gives rows of exactly equal similarity (which it does not define either; tied rows of one
    class vote the same in any order).
    """

    def __init__(self, train_feats: torch.Tensor, k: int, train_chunk_size: int) -> None:
        self.feats = train_feats
        self.device = train_feats.device
        self.work_dtype = torch.promote_types(train_feats.dtype, torch.float32)
        self.k = k
        self.chunk = int(train_chunk_size)
        n = train_feats.shape[0]
        self.whole = (F.normalize(train_feats.to(self.work_dtype), dim=1)
                      if n <= self.chunk else None)

    def query(self, chunk: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(similarities, training indices)`` [c, k] of normalised ``chunk`` [c, D], most
        similar first."""
        if self.whole is not None:
            sim = chunk @ self.whole.T  # [c, N_train]
            return sim.topk(self.k, dim=1, sorted=True)
        best_sim: torch.Tensor | None = None
        best_idx: torch.Tensor | None = None
        n = self.feats.shape[0]
        for start in range(0, n, self.chunk):
            # Every block is train_chunk_size wide: the last one ends at N_train and overlaps
            # the one before (its first `skip` columns, already seen, are dropped), so no
            # block is a sliver that BLAS would multiply by another kernel (a matrix-vector
            # product for one row), whose sums could differ in the last bit.
            first = min(start, n - self.chunk)
            skip = start - first
            block = F.normalize(self.feats[first : first + self.chunk].to(self.work_dtype),
                                dim=1)
            sim = chunk @ block.T  # [c, train_chunk_size]
            del block
            if skip:
                sim = sim[:, skip:]
            top_sim, top_idx = sim.topk(min(self.k, sim.shape[1]), dim=1, sorted=True)
            del sim
            top_idx += start
            if best_sim is None or best_idx is None:
                best_sim, best_idx = top_sim, top_idx
                continue
            both_sim = torch.cat([best_sim, top_sim], dim=1)
            both_idx = torch.cat([best_idx, top_idx], dim=1)
            best_sim, pos = both_sim.topk(min(self.k, both_sim.shape[1]), dim=1, sorted=True)
            best_idx = both_idx.gather(1, pos)
        assert best_sim is not None and best_idx is not None  # N_train >= 1 (checked)
        return best_sim, best_idx



def _check(train_feats: torch.Tensor, train_labels: torch.Tensor, test_feats: torch.Tensor,
           num_classes: int, k: int, temperature: float, chunk_size: int,
           train_chunk_size: int = TRAIN_CHUNK) -> None:
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
    if train_chunk_size < 1:
        raise ValueError(f"train_chunk_size must be >= 1, got {train_chunk_size}")
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
    train_chunk_size: int = TRAIN_CHUNK,
) -> torch.Tensor:
    """Weighted-kNN class scores for each test row.

    Features are L2-normalised; the similarity is the cosine ``s``; each test row takes its
    ``min(k, N_train)`` most similar training rows, weights them by ``exp(s / temperature)`` and
    sums the weights per neighbour class. Test rows are processed ``chunk_size`` at a time
    against training rows ``train_chunk_size`` at a time (a running top-k), so the working
    memory beyond the inputs is ``O(chunk_size * train_chunk_size + train_chunk_size * D)``,
    never ``[N_test, N_train]`` nor a float32 copy of a large training set.

    Shapes: ``train_feats [N_train, D]``, ``train_labels [N_train]`` (ints in
    ``[0, num_classes)``), ``test_feats [N_test, D]`` -> scores ``[N_test, num_classes]``
    (``float64``, or ``float32`` on devices without float64), on ``train_feats``' device.
    Weights are accumulated in float64 so ``exp(1/temperature)`` does not overflow for
    ``temperature`` down to ~0.0015.
    """
    train_labels = torch.as_tensor(train_labels)
    _check(train_feats, train_labels, test_feats, num_classes, k, temperature, chunk_size,
           train_chunk_size)
    device = train_feats.device
    acc_dtype = torch.float32 if device.type == "mps" else torch.float64
    k = min(int(k), train_feats.shape[0])
    neighbours = _Neighbours(train_feats, k, train_chunk_size)
    work_dtype = neighbours.work_dtype
    labels = train_labels.to(device=device, dtype=torch.long)
    n_test = test_feats.shape[0]
    scores = torch.zeros(n_test, num_classes, dtype=acc_dtype, device=device)
    for start in range(0, n_test, chunk_size):
        chunk = test_feats[start : start + chunk_size].to(device=device, dtype=work_dtype)
        top_sim, top_idx = neighbours.query(F.normalize(chunk, dim=1))  # [c, k]
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
    train_chunk_size: int = TRAIN_CHUNK,
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
                          temperature=temperature, chunk_size=chunk_size,
                          train_chunk_size=train_chunk_size)
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
    train_chunk_size: int = TRAIN_CHUNK,
) -> dict[str, dict[str, float]]:
    """Top-1 / top-5 weighted-kNN accuracy (percent) for several ``k`` in one pass.

    Same classifier as :func:`knn_classify`: cosine similarity ``s`` between L2-normalised
    rows, each of the ``min(k, N_train)`` nearest training rows votes ``exp(s / temperature)``
    for its class. Per chunk of ``chunk_size`` test rows the ``K = min(max(ks), N_train)``
    nearest neighbours are found once (sorted, most similar first) and each ``k`` uses the
    first ``min(k, N_train)`` of them, so the cost is one pass over the training rows per chunk
    whatever the number of ``k``. The training rows are compared ``train_chunk_size`` at a time
    keeping a running top-K (as in :func:`knn_classify`): at most one similarity block
    ``[chunk_size, train_chunk_size]`` at once, never ``[N_test, N_train]``.

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
    _check(train_feats, train_labels, test_feats, num_classes, max(ks), temperature, chunk_size,
           train_chunk_size)
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
    labels = train_labels.to(device=device, dtype=torch.long)
    test_labels = test_labels.to(device=device, dtype=torch.long)
    n_train, n_test = train_feats.shape[0], test_feats.shape[0]
    k_max = min(max(ks), n_train)
    neighbours = _Neighbours(train_feats, k_max, train_chunk_size)
    work_dtype = neighbours.work_dtype
    n_top = min(5, num_classes)
    hits1 = {k: 0 for k in ks}
    hits5 = {k: 0 for k in ks}
    for start in range(0, n_test, chunk_size):
        chunk = test_feats[start : start + chunk_size].to(device=device, dtype=work_dtype)
        # sorted: the first k columns are the k nearest neighbours, for every k <= k_max
        top_sim, top_idx = neighbours.query(F.normalize(chunk, dim=1))
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
