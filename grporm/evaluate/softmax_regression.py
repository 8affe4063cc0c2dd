"""Linear probe: multinomial logistic regression on frozen, standardised features (docs/method.md,
'Softmax regression (SR)').

Full-batch L-BFGS from a zero init, so the result is deterministic for given inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .calibration import per_class_accuracy, top1


def _fit(x: torch.Tensor, y: torch.Tensor, num_classes: int, l2: float, max_iter: int, start=None):
    """(W, b) minimising mean CE + l2 * ||W||^2; the bias is not penalised.

    `start` warm-starts from another strength's solution: the problem is convex, so the optimum
    is the same, reached in fewer iterations. The gradient is written out instead of autograd's,
    because autograd's x.T @ g is a slow skinny product on CPUs; (g.T @ x).T and (W.T @ x.T).T
    with x.T stored once are 3-6x faster (benchmarks/, evaluation).
    """
    if start is None:
        w = torch.zeros(x.shape[1], num_classes, device=x.device)
        b = torch.zeros(num_classes, device=x.device)
    else:
        w, b = (t.clone() for t in start)
    xt = x.t().contiguous()
    onehot = F.one_hot(y, num_classes).to(x.dtype)
    # history_size 10 instead of 100: memory is history * |W|, and the problem is convex.
    # tolerance_grad 1e-5: accuracy does not move past it, iterations do (see benchmarks/).
    opt = torch.optim.LBFGS(
        [w, b], lr=1.0, max_iter=max_iter, history_size=10, line_search_fn="strong_wolfe",
        tolerance_grad=1e-5, tolerance_change=1e-9,
    )

    @torch.no_grad()
    def closure():
        logits = (w.t() @ xt).t() + b
        loss = F.cross_entropy(logits, y) + l2 * w.pow(2).sum()
        residual = (logits.softmax(dim=1) - onehot) / len(y)  # d(mean CE) / d(logits)
        w.grad = (residual.t() @ x).t().contiguous() + 2 * l2 * w
        b.grad = residual.sum(dim=0)
        return loss

    opt.step(closure)  # one step runs up to max_iter L-BFGS iterations
    return w.detach(), b.detach()


def _predict(params, x: torch.Tensor) -> torch.Tensor:
    w, b = params
    return (x @ w + b).argmax(dim=1)


@dataclass(frozen=True)
class LinearProbe:
    """The fitted classifier, so shifted test sets can be scored without refitting."""

    w: torch.Tensor
    b: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor

    def predict(self, feats: torch.Tensor) -> torch.Tensor:
        x = (feats.to(self.w.device).float() - self.mean) / self.std
        return _predict((self.w, self.b), x)


def softmax_regression(
    train_feats: torch.Tensor,
    train_labels: torch.Tensor,
    test_feats: torch.Tensor,
    test_labels: torch.Tensor,
    val_feats: torch.Tensor | None = None,
    val_labels: torch.Tensor | None = None,
    l2_grid: Sequence[float] = (0.0, 1e-4, 1e-3, 1e-2),
    max_iter: int = 200,
    num_classes: int | None = None,
) -> dict:
    """Fit a linear softmax classifier on train and score it on test.

    Returns {"top1": test accuracy, "l2": chosen strength, "val_by_l2": {l2: val acc},
    "per_class": per-class test accuracies, "probe": the fitted LinearProbe} plus "val_top1"
    when a val split is given.
    The l2 strength is the grid value with the best val accuracy (ties -> larger l2),
    or the first grid value without a val split.
    """
    if (val_feats is None) != (val_labels is None):
        raise ValueError("give both val_feats and val_labels, or neither")
    if not l2_grid:
        raise ValueError("l2_grid is empty")
    if train_feats.ndim != 2 or train_labels.shape != (train_feats.shape[0],):
        raise ValueError("train_feats must be (N, D) with one label per row")
    if test_labels.shape != (test_feats.shape[0],) or test_feats.shape[0] == 0:
        raise ValueError("need a non-empty test set with one label per row")

    device = train_feats.device
    x_train = train_feats.float()
    # Standardise with train statistics only; constant features get std 1 (stay 0).
    mean = x_train.mean(dim=0)
    std = x_train.std(dim=0, unbiased=False)
    std = torch.where(std > 1e-8, std, torch.ones_like(std))

    def prep(x: torch.Tensor) -> torch.Tensor:
        return (x.to(device).float() - mean) / std

    def labels(y: torch.Tensor) -> torch.Tensor:
        return y.to(device=device, dtype=torch.long)

    x_train, y_train = prep(train_feats), labels(train_labels)
    x_test, y_test = prep(test_feats), labels(test_labels)
    if num_classes is None:
        seen = [y_train, y_test] + ([labels(val_labels)] if val_labels is not None else [])
        num_classes = int(max(int(y.max()) for y in seen if y.numel())) + 1

    # Fits are deterministic, so the model selected on val *is* the train-only fit with
    # the chosen l2: keep it instead of fitting it a second time.
    fits: dict[float, tuple] = {}
    val_by_l2: dict[float, float] = {}
    if val_feats is not None:
        x_val, y_val = prep(val_feats), labels(val_labels)
        previous = None
        for l2 in sorted(l2_grid, reverse=True):  # strongest first: each warm-starts the next
            fits[l2] = previous = _fit(x_train, y_train, num_classes, l2, max_iter, previous)
            val_by_l2[l2] = top1(_predict(fits[l2], x_val), y_val)
        chosen = max(l2_grid, key=lambda l2: (val_by_l2[l2], l2))
    else:
        chosen = l2_grid[0]
        fits[chosen] = _fit(x_train, y_train, num_classes, chosen, max_iter)

    test_pred = _predict(fits[chosen], x_test)
    result = {
        "top1": top1(test_pred, y_test),
        "l2": chosen,
        "val_by_l2": val_by_l2,
        "per_class": per_class_accuracy(test_pred, y_test, num_classes),
        "probe": LinearProbe(*fits[chosen], mean, std),
    }
    if val_feats is not None:
        result["val_top1"] = val_by_l2[chosen]
    return result
