"""Benchmark 3: SR + kNN on cached features, the suite's against scikit-learn's.

Same features (a synthetic Gaussian mixture, see `common.gaussian_features`), same splits, same
thread count (torch threads and the BLAS / OpenMP pools set alike).

- SR, ours: `grporm.evaluate.softmax_regression` with a val split and its L2 grid (features
  standardised with train statistics, full-batch L-BFGS, `max_iter` iterations).
  SR, scikit-learn: `StandardScaler` + `LogisticRegression(solver="lbfgs")` (multinomial for more
  than two classes), one fit per grid value, the same selection rule (best val accuracy, ties to
  the larger L2). Ours minimises mean CE + l2 * ||W||^2, scikit-learn C * sum CE + ||W||^2 / 2, so
  the same problem is C = 1 / (2 * l2 * n_train), and l2 = 0 is no penalty.
- kNN, ours: `grporm.evaluate.knn_predict` (k = 20, cosine, weights exp(sim / 0.07)).
  kNN, scikit-learn: `KNeighborsClassifier(n_neighbors=20, metric="cosine", weights="distance")`
  (brute force; weights 1 / distance, the closest scikit-learn offers to the DINO vote).
Times include each side's whole work from cached features to test predictions.
"""
from __future__ import annotations

import inspect
import math
import time

import numpy as np
import torch

from benchmarks.common import Sizes, gaussian_features, summary, time_ms


def sklearn_logreg(l2: float, n_train: int, max_iter: int):
    """`LogisticRegression` minimising the same objective as ours for strength `l2`."""
    from sklearn.linear_model import LogisticRegression

    penalty_default = inspect.signature(LogisticRegression).parameters["penalty"].default
    kwargs: dict = {"solver": "lbfgs", "max_iter": max_iter}
    if l2 == 0:
        # scikit-learn >= 1.8 spells "no penalty" C=inf (penalty is deprecated); older: penalty=None.
        kwargs.update({"C": math.inf} if penalty_default == "deprecated" else {"penalty": None})
    else:
        kwargs["C"] = 1.0 / (2.0 * l2 * n_train)
    return LogisticRegression(**kwargs)


def sklearn_sr(xtr, ytr, xva, yva, xte, yte, grid, max_iter: int) -> dict:
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(xtr)
    xtr, xva, xte = scaler.transform(xtr), scaler.transform(xva), scaler.transform(xte)
    fits, val, iters = {}, {}, {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for l2 in grid:
            fits[l2] = sklearn_logreg(l2, len(ytr), max_iter).fit(xtr, ytr)
            val[l2] = float((fits[l2].predict(xva) == yva).mean())
            iters[l2] = int(np.max(fits[l2].n_iter_))
    chosen = max(grid, key=lambda l2: (val[l2], l2))
    return {"top1": float((fits[chosen].predict(xte) == yte).mean()), "l2": chosen,
            "val_by_l2": val, "n_iter_by_l2": iters}


def sklearn_knn(xtr, ytr, xte, k: int) -> np.ndarray:
    from sklearn.neighbors import KNeighborsClassifier

    return KNeighborsClassifier(n_neighbors=k, metric="cosine", weights="distance",
                                algorithm="brute").fit(xtr, ytr).predict(xte)


def features(sizes: Sizes, n_train: int | None = None, num_classes: int | None = None,
             n_test: int | None = None) -> dict:
    c = num_classes or sizes.eval_classes
    out = {}
    for split, n, seed in (("train", n_train or sizes.eval_train, 1), ("val", sizes.eval_val, 2),
                           ("test", n_test or sizes.eval_test, 3)):
        out[split] = gaussian_features(n, sizes.eval_dim, c, seed)
    return out


def ours_sr(f: dict, grid, max_iter: int) -> dict:
    from grporm.evaluate import softmax_regression

    (xtr, ytr), (xva, yva), (xte, yte) = f["train"], f["val"], f["test"]
    return softmax_regression(xtr, ytr, xte, yte, xva, yva, l2_grid=tuple(grid), max_iter=max_iter)


def ours_knn(f: dict, k: int) -> torch.Tensor:
    from grporm.evaluate import knn_predict

    (xtr, ytr), (xte, _) = f["train"], f["test"]
    return knn_predict(xtr, ytr, xte, k=k, temperature=0.07)


def count_sr_evaluations(f: dict, grid, max_iter: int) -> int | None:
    """Loss + gradient evaluations (calls of F.cross_entropy) our SR makes over the whole grid.

    Counted in a separate, untimed call through a `TorchFunctionMode`, so grporm is not patched;
    None if the implementation no longer calls F.cross_entropy.
    """
    import torch.nn.functional as F
    from torch.overrides import TorchFunctionMode

    class Count(TorchFunctionMode):
        calls = 0

        def __torch_function__(self, func, types, args=(), kwargs=None):
            if func is F.cross_entropy:
                Count.calls += 1
            return func(*args, **(kwargs or {}))

    with Count():
        ours_sr(f, grid, max_iter)
    return Count.calls or None


def matmul_diagnostic(n: int, dim: int, classes: int, repeats: int) -> dict:
    """ms of the two products every SR loss + gradient evaluation needs, torch vs numpy.

    X @ W (n x dim by dim x C) and X^T @ G (the gradient): torch's CPU BLAS against the BLAS numpy
    (and so scikit-learn) uses, on the same float32 data, one at a time.
    """
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, dim, generator=g)
    w = torch.randn(dim, classes, generator=g)
    grad = torch.randn(n, classes, generator=g)
    xn, wn, gn = x.numpy(), w.numpy(), grad.numpy()
    cases = {
        "torch X @ W": lambda: x @ w,
        "numpy X @ W": lambda: xn @ wn,
        "torch X.T @ G": lambda: x.T @ grad,
        "numpy X.T @ G": lambda: xn.T @ gn,
    }
    return {name: time_ms(fn, repeats) for name, fn in cases.items()}


def run(sizes: Sizes, log=print) -> dict:
    f = features(sizes)
    n = {k: {"torch": v, "numpy": (v[0].numpy(), v[1].numpy())} for k, v in f.items()}
    (xtr, ytr), (xva, yva), (xte, yte) = (n[s]["numpy"] for s in ("train", "val", "test"))
    from grporm.evaluate import top1

    grid = sizes.l2_grid

    def ours():
        t0 = time.perf_counter()
        sr = ours_sr(f, grid, sizes.sr_max_iter)
        t1 = time.perf_counter()
        pred = ours_knn(f, sizes.knn_k)
        t2 = time.perf_counter()
        knn_top1 = top1(pred, f["test"][1])
        return {"sr": t1 - t0, "knn": t2 - t1}, {"sr": sr["top1"], "knn": knn_top1, "sr_l2": sr["l2"],
                                                  "sr_val_by_l2": sr["val_by_l2"]}

    def sklearn():
        t0 = time.perf_counter()
        sr = sklearn_sr(xtr, ytr, xva, yva, xte, yte, grid, sizes.sr_max_iter)
        t1 = time.perf_counter()
        pred = sklearn_knn(xtr, ytr, xte, sizes.knn_k)
        t2 = time.perf_counter()
        return {"sr": t1 - t0, "knn": t2 - t1}, {"sr": sr["top1"], "knn": float((pred == yte).mean()),
                                                  "sr_l2": sr["l2"], "sr_val_by_l2": sr["val_by_l2"],
                                                  "sr_n_iter_by_l2": sr["n_iter_by_l2"]}

    sides = {"ours": ours, "sklearn": sklearn}
    times = {side: {"sr": [], "knn": [], "total": []} for side in sides}
    acc: dict[str, dict] = {}
    ratios = {"sr": [], "knn": [], "total": []}
    for r in range(sizes.eval_repeats):
        order = ("ours", "sklearn") if r % 2 == 0 else ("sklearn", "ours")
        for side in order:
            t, acc[side] = sides[side]()
            t["total"] = t["sr"] + t["knn"]
            for part, v in t.items():
                times[side][part].append(v)
        for part in ratios:
            ratios[part].append(times["sklearn"][part][-1] / times["ours"][part][-1])
        log(f"  evaluation repeat {r + 1}/{sizes.eval_repeats}: ours {times['ours']['total'][-1]:.2f} s "
            f"(SR {times['ours']['sr'][-1]:.2f}, kNN {times['ours']['knn'][-1]:.2f}), sklearn "
            f"{times['sklearn']['total'][-1]:.2f} s (SR {times['sklearn']['sr'][-1]:.2f}, "
            f"kNN {times['sklearn']['knn'][-1]:.2f}); speed-up {ratios['total'][-1]:.2f}x")
    diagnostic = matmul_diagnostic(sizes.eval_train, sizes.eval_dim, sizes.eval_classes, 10)
    evaluations = count_sr_evaluations(f, grid, sizes.sr_max_iter)
    return {
        "matmul_ms": diagnostic,
        "ours_sr_loss_evaluations": evaluations,
        "features": {"train": sizes.eval_train, "val": sizes.eval_val, "test": sizes.eval_test,
                     "dim": sizes.eval_dim, "classes": sizes.eval_classes,
                     "kind": "synthetic Gaussian mixture (32-d latent, random projection, softplus)"},
        "sr": {"l2_grid": list(grid), "max_iter": sizes.sr_max_iter},
        "knn": {"k": sizes.knn_k, "ours": "cosine, weights exp(sim / 0.07)",
                "sklearn": "cosine, weights 1 / distance, brute force"},
        "times_s": {side: {part: summary(v) for part, v in parts.items()} for side, parts in times.items()},
        "speedup_sklearn_over_ours": {part: summary(v) for part, v in ratios.items()},
        "accuracy": acc,
        "accuracy_diff_points": {part: round(100.0 * (acc["ours"][part] - acc["sklearn"][part]), 6) + 0.0
                                 for part in ("sr", "knn")},
    }
