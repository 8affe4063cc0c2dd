"""Weighted k-nearest-neighbour classification on frozen features (docs/method.md, 'kNN (DINO protocol)').

Features are L2-normalised so the dot product is the cosine similarity; the k most
similar training rows vote for their label with weight exp(sim / T).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from .calibration import top1


def _knn_predictions(
    train_feats: torch.Tensor,
    train_labels: torch.Tensor,
    test_feats: torch.Tensor,
    ks: Sequence[int],
    temperature: float,
    num_classes: int | None,
    chunk_size: int,
) -> dict[int, torch.Tensor]:
    """Predictions for every k in `ks`, from a single top-k search with k = max(ks).

    The only implementation of the vote: knn_predict and knn_accuracy both call it.
    """
    if train_feats.ndim != 2 or test_feats.ndim != 2:
        raise ValueError("train_feats and test_feats must be 2-D (rows, dim)")
    if train_feats.shape[1] != test_feats.shape[1]:
        raise ValueError(f"feature dims differ: {train_feats.shape[1]} vs {test_feats.shape[1]}")
    n_train = train_feats.shape[0]
    if n_train == 0 or train_labels.shape != (n_train,):
        raise ValueError("need a non-empty train set with one label per row")
    if not ks or min(ks) < 1:
        raise ValueError(f"every k must be >= 1, got {list(ks)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")

    device = train_feats.device
    train_labels = train_labels.to(device=device, dtype=torch.long)
    if num_classes is None:
        num_classes = int(train_labels.max()) + 1
    # Normalise once; float32 so half-precision features do not overflow exp(sim / T).
    train = F.normalize(train_feats.float(), dim=1)
    # A k beyond the train set just means "every training row votes".
    k_max = min(max(ks), n_train)

    preds: dict[int, list[torch.Tensor]] = {k: [] for k in ks}
    for start in range(0, test_feats.shape[0], chunk_size):
        # Chunking bounds the (chunk x n_train) similarity matrix, e.g. 10k x 60k.
        test = F.normalize(test_feats[start : start + chunk_size].to(device).float(), dim=1)
        sims, idx = (test @ train.T).topk(k_max, dim=1)  # sorted, most similar first
        weights = (sims / temperature).exp()
        neigh_labels = train_labels[idx]
        for k in ks:
            kk = min(k, n_train)
            # Sorted top-k_max means the first kk columns are exactly the top-kk.
            votes = torch.zeros(test.shape[0], num_classes, device=device)
            votes.scatter_add_(1, neigh_labels[:, :kk], weights[:, :kk])
            preds[k].append(votes.argmax(dim=1))
    empty = torch.empty(0, dtype=torch.long, device=device)
    return {k: torch.cat(p) if p else empty for k, p in preds.items()}


def knn_predict(
    train_feats: torch.Tensor,
    train_labels: torch.Tensor,
    test_feats: torch.Tensor,
    k: int = 20,
    temperature: float = 0.07,
    num_classes: int | None = None,
    chunk_size: int = 1024,
) -> torch.Tensor:
    """Predicted label (LongTensor, one per test row) by temperature-weighted kNN vote."""
    return _knn_predictions(
        train_feats, train_labels, test_feats, (k,), temperature, num_classes, chunk_size
    )[k]


def knn_accuracy(
    train_feats: torch.Tensor,
    train_labels: torch.Tensor,
    test_feats: torch.Tensor,
    test_labels: torch.Tensor,
    ks: Sequence[int] = (10, 20, 100, 200),
    temperature: float = 0.07,
    num_classes: int | None = None,
    chunk_size: int = 1024,
) -> dict[int, float]:
    """Test accuracy (in [0, 1]) for each k; one similarity search serves all of them."""
    if test_labels.shape != (test_feats.shape[0],):
        raise ValueError("need one test label per test row")
    if test_feats.shape[0] == 0:
        raise ValueError("empty test set")
    preds = _knn_predictions(
        train_feats, train_labels, test_feats, tuple(ks), temperature, num_classes, chunk_size
    )
    labels = test_labels.to(device=train_feats.device, dtype=torch.long)
    return {k: top1(p, labels) for k, p in preds.items()}
