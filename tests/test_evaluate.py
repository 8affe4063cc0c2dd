"""Tests for grporm.evaluate: kNN vote, softmax-regression probe, ECE, per-class accuracy."""

import math

import pytest
import torch

from grporm.evaluate import (
    expected_calibration_error,
    knn_accuracy,
    knn_predict,
    per_class_accuracy,
    softmax_regression,
)

# ---------------------------------------------------------------- kNN


def brute_force_knn(train, train_labels, test, k, temperature, num_classes):
    """Plain reference: per test point, sort cosine similarities, weighted vote."""
    preds = []
    for q in test:
        sims = []
        for i, t in enumerate(train):
            cos = float(q @ t) / (float(q.norm()) * float(t.norm()))
            sims.append((cos, i))
        sims.sort(key=lambda s: -s[0])
        votes = [0.0] * num_classes
        for cos, i in sims[:k]:  # slicing past the end keeps every training point
            votes[int(train_labels[i])] += math.exp(cos / temperature)
        preds.append(max(range(num_classes), key=lambda c: votes[c]))
    return torch.tensor(preds)


def random_problem(seed, n_train, n_test, dim, num_classes):
    g = torch.Generator().manual_seed(seed)
    # Class-dependent means so neighbourhoods are informative and votes are not all ties.
    means = torch.randn(num_classes, dim, generator=g)
    y_train = torch.randint(0, num_classes, (n_train,), generator=g)
    y_test = torch.randint(0, num_classes, (n_test,), generator=g)
    x_train = means[y_train] + 1.5 * torch.randn(n_train, dim, generator=g)
    x_test = means[y_test] + 1.5 * torch.randn(n_test, dim, generator=g)
    return x_train, y_train, x_test, y_test


@pytest.mark.parametrize(
    "seed,n_train,num_classes,k,temperature",
    [
        (0, 60, 3, 1, 0.07),
        (1, 60, 3, 5, 0.07),
        (2, 80, 5, 20, 0.5),
        (3, 40, 4, 7, 1.0),
        (4, 15, 3, 50, 0.1),  # k larger than the training set
    ],
)
def test_knn_predict_matches_brute_force(seed, n_train, num_classes, k, temperature):
    x_train, y_train, x_test, _ = random_problem(seed, n_train, 25, 8, num_classes)
    expected = brute_force_knn(x_train, y_train, x_test, k, temperature, num_classes)
    got = knn_predict(x_train, y_train, x_test, k=k, temperature=temperature)
    assert got.dtype == torch.long
    assert torch.equal(got, expected)
    # Chunk boundaries (7 does not divide 25) must not change anything.
    chunked = knn_predict(x_train, y_train, x_test, k=k, temperature=temperature, chunk_size=7)
    assert torch.equal(chunked, expected)


def test_knn_is_scale_invariant():
    # Cosine similarity: rescaling any row by a positive factor changes nothing.
    x_train, y_train, x_test, _ = random_problem(5, 50, 20, 6, 3)
    g = torch.Generator().manual_seed(0)
    scaled_train = x_train * (0.1 + 10 * torch.rand(50, 1, generator=g))
    scaled_test = x_test * (0.1 + 10 * torch.rand(20, 1, generator=g))
    a = knn_predict(x_train, y_train, x_test, k=9)
    b = knn_predict(scaled_train, y_train, scaled_test, k=9)
    assert torch.equal(a, b)


def test_knn_accuracy_consistent_with_predict():
    x_train, y_train, x_test, y_test = random_problem(6, 70, 30, 8, 4)
    ks = (1, 3, 10, 20, 100)  # 100 > 70 training rows
    acc = knn_accuracy(x_train, y_train, x_test, y_test, ks=ks, temperature=0.2, chunk_size=8)
    assert set(acc) == set(ks)
    for k in ks:
        pred = knn_predict(x_train, y_train, x_test, k=k, temperature=0.2)
        assert acc[k] == pytest.approx((pred == y_test).float().mean().item())
    # Informative features: the vote beats chance (0.25) by a clear margin.
    assert acc[10] > 0.5


def test_temperature_changes_the_vote():
    # One class-0 neighbour identical to the query (cos 1.0), two class-1 neighbours at cos 0.9.
    s = math.sqrt(1 - 0.9**2)
    train = torch.tensor([[1.0, 0.0], [0.9, s], [0.9, -s]])
    labels = torch.tensor([0, 1, 1])
    query = torch.tensor([[1.0, 0.0]])
    # Low T: exp(1/0.07) > 2 * exp(0.9/0.07), the closest point wins.
    assert knn_predict(train, labels, query, k=3, temperature=0.07).tolist() == [0]
    # High T: weights nearly equal, 2 votes beat 1 (e / 2e^0.9 < 1).
    assert knn_predict(train, labels, query, k=3, temperature=1.0).tolist() == [1]
    # With k=1 only the nearest votes, whatever the temperature.
    assert knn_predict(train, labels, query, k=1, temperature=1.0).tolist() == [0]


def test_knn_num_classes_default_and_explicit():
    train = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([0, 2])  # class 1 absent: default num_classes = 3 still works
    query = torch.tensor([[0.1, 1.0], [1.0, 0.1]])
    assert knn_predict(train, labels, query, k=1).tolist() == [2, 0]
    assert knn_predict(train, labels, query, k=1, num_classes=5).tolist() == [2, 0]


# ---------------------------------------------------------------- softmax regression


def blobs(seed, n, dim=8, num_classes=3, sep=6.0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % num_classes
    x = torch.randn(n, dim, generator=g)
    x[torch.arange(n), y] += sep  # class c shifted along axis c: linearly separable
    return x, y


def test_sr_separable_data_is_perfect():
    x_train, y_train = blobs(0, 150)
    x_test, y_test = blobs(1, 150)
    res = softmax_regression(x_train, y_train, x_test, y_test)
    assert res["top1"] == 1.0
    assert res["l2"] == 0.0  # no val split: first grid value
    assert "val_top1" not in res and res["val_by_l2"] == {}
    assert res["per_class"] == [1.0, 1.0, 1.0]


def test_sr_random_labels_is_near_chance():
    g = torch.Generator().manual_seed(0)
    x_train, x_test = torch.randn(200, 10, generator=g), torch.randn(1000, 10, generator=g)
    y_train = torch.randint(0, 4, (200,), generator=g)
    y_test = torch.randint(0, 4, (1000,), generator=g)
    res = softmax_regression(x_train, y_train, x_test, y_test, max_iter=100)
    assert abs(res["top1"] - 0.25) < 0.07


def test_sr_ties_pick_the_larger_l2():
    x_train, y_train = blobs(2, 90)
    x_val, y_val = blobs(3, 60)
    x_test, y_test = blobs(4, 60)
    grid = (0.0, 1e-4, 1e-3)
    res = softmax_regression(x_train, y_train, x_test, y_test, x_val, y_val, l2_grid=grid)
    assert set(res["val_by_l2"]) == set(grid)
    assert all(v == 1.0 for v in res["val_by_l2"].values())
    assert res["l2"] == 1e-3
    assert res["val_top1"] == 1.0 and res["top1"] == 1.0


def imbalanced_1d(n0, n1, x0, x1, seed):
    """Class 0 near x0, class 1 near x1 (plus a noise feature)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n0 + n1, 2, generator=g) * 0.1
    x[:n0, 0] += x0
    x[n0:, 0] += x1
    y = torch.cat([torch.zeros(n0, dtype=torch.long), torch.ones(n1, dtype=torch.long)])
    return x, y


def test_sr_l2_selection_follows_validation():
    # Train: 70 % class 0 at -1, 30 % class 1 at +1. A huge l2 shrinks W to ~0, so that model
    # predicts the majority class (bias) everywhere; l2 = 0 separates the classes.
    x_train, y_train = imbalanced_1d(70, 30, -1.0, 1.0, seed=0)
    grid = (0.0, 1e3)

    # Val drawn like train: l2 = 0 is right everywhere, the shrunk model misses class 1.
    x_val, y_val = imbalanced_1d(35, 15, -1.0, 1.0, seed=1)
    res = softmax_regression(x_train, y_train, x_val, y_val, x_val, y_val, l2_grid=grid)
    assert res["val_by_l2"][0.0] == 1.0
    assert res["val_by_l2"][1e3] == pytest.approx(0.7)
    assert res["l2"] == 0.0 and res["val_top1"] == 1.0

    # Val made only of class-0 points sitting where train had class 1: the larger l2 helps
    # validation, so it must be picked, and the test score is that of the shrunk model.
    x_val2 = imbalanced_1d(20, 0, 1.0, 0.0, seed=2)[0]
    y_val2 = torch.zeros(20, dtype=torch.long)
    x_test, y_test = imbalanced_1d(35, 15, -1.0, 1.0, seed=3)
    res = softmax_regression(x_train, y_train, x_test, y_test, x_val2, y_val2, l2_grid=grid)
    assert res["val_by_l2"] == {0.0: 0.0, 1e3: 1.0}
    assert res["l2"] == 1e3 and res["val_top1"] == 1.0
    assert res["top1"] == pytest.approx(0.7)
    assert res["per_class"] == [1.0, 0.0]


def test_sr_is_deterministic_and_standardises_with_train_stats():
    x_train, y_train = blobs(5, 60)
    x_test, y_test = blobs(6, 60)
    a = softmax_regression(x_train, y_train, x_test, y_test, l2_grid=(1e-3,))
    b = softmax_regression(x_train, y_train, x_test, y_test, l2_grid=(1e-3,))
    probe_a, probe_b = a.pop("probe"), b.pop("probe")
    assert a == b
    assert torch.equal(probe_a.w, probe_b.w) and torch.equal(probe_a.b, probe_b.b)
    # An affine change of units per feature (applied to every split) is undone by standardising.
    scale, shift = torch.linspace(0.01, 100, 8), torch.linspace(-50, 50, 8)
    c = softmax_regression(x_train * scale + shift, y_train, x_test * scale + shift, y_test,
                           l2_grid=(1e-3,))
    assert c["top1"] == a["top1"]


def test_sr_rejects_half_a_val_split():
    x, y = blobs(0, 30)
    with pytest.raises(ValueError):
        softmax_regression(x, y, x, y, val_feats=x)


# ---------------------------------------------------------------- ECE / per-class accuracy


def test_ece_hand_computed():
    probs = torch.tensor(
        [
            [0.90, 0.05, 0.05],  # conf .9, correct      -> bin (0.5, 1]
            [0.20, 0.70, 0.10],  # conf .7, wrong        -> bin (0.5, 1]
            [0.40, 0.30, 0.30],  # conf .4, correct      -> bin (0, 0.5]
            [0.35, 0.25, 0.40],  # conf .4, wrong        -> bin (0, 0.5]
        ]
    )
    labels = torch.tensor([0, 0, 0, 1])
    # High bin: acc .5, conf .8 -> .3 * 2/4; low bin: acc .5, conf .4 -> .1 * 2/4.
    assert expected_calibration_error(probs, labels, n_bins=2) == pytest.approx(0.2)
    # One bin: |mean acc .5 - mean conf .6| = .1 (the bins matter).
    assert expected_calibration_error(probs, labels, n_bins=1) == pytest.approx(0.1)


def test_ece_bins_are_left_open_right_closed():
    # Conf exactly .5 belongs to (0, .5]: |1 - .5| * 1/2 + |0 - .9| * 1/2 = .7
    # (were it put in (.5, 1] with the other sample: |.5 - .7| = .2).
    probs = torch.tensor([[0.5, 0.3, 0.2], [0.9, 0.05, 0.05]])
    labels = torch.tensor([0, 1])
    assert expected_calibration_error(probs, labels, n_bins=2) == pytest.approx(0.7)


def test_ece_zero_when_calibrated_and_one_when_confidently_wrong():
    # Conf .75 with 3 of 4 right, conf 1.0 with all right: calibrated in every bin.
    probs = torch.tensor([[0.75, 0.25]] * 4 + [[0.0, 1.0]] * 3)
    labels = torch.tensor([0, 0, 0, 1, 1, 1, 1])
    assert expected_calibration_error(probs, labels) == pytest.approx(0.0, abs=1e-12)
    wrong = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert expected_calibration_error(wrong, torch.tensor([1, 0])) == pytest.approx(1.0)


def test_per_class_accuracy_hand_case():
    pred = torch.tensor([0, 1, 1, 2, 0])
    labels = torch.tensor([0, 1, 2, 2, 1])
    acc = per_class_accuracy(pred, labels, num_classes=4)
    assert acc[:3] == [1.0, 0.5, 0.5]
    assert len(acc) == 4 and math.isnan(acc[3])  # class 3 has no sample


def test_softmax_regression_returns_the_fitted_probe_for_shifted_test_sets():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(120, 6, generator=g)
    y = (x[:, 0] > 0).long() + 2 * (x[:, 1] > 0).long()
    out = softmax_regression(x[:80], y[:80], x[80:], y[80:], x[:20], y[:20], l2_grid=(0.0, 1e-2))
    pred = out["probe"].predict(x[80:])
    assert (pred == y[80:]).float().mean().item() == pytest.approx(out["top1"])


def test_sr_closed_form_gradient_matches_autograd(monkeypatch):
    """The hand-written gradient of the SR objective equals autograd's."""
    import importlib

    import torch.nn.functional as F

    sr_module = importlib.import_module("grporm.evaluate.softmax_regression")
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(50, 7, generator=g), torch.randint(0, 4, (50,), generator=g)
    w = torch.randn(7, 4, generator=g, requires_grad=True)
    b = torch.randn(4, generator=g, requires_grad=True)
    (F.cross_entropy(x @ w + b, y) + 0.1 * w.pow(2).sum()).backward()
    captured = {}

    class OneCall(torch.optim.LBFGS):
        def step(self, closure):
            closure()
            captured["w"], captured["b"] = (p.grad.clone() for p in self.param_groups[0]["params"])

    monkeypatch.setattr(sr_module.torch.optim, "LBFGS", OneCall)
    sr_module._fit(x, y, 4, 0.1, 1, start=(w.detach(), b.detach()))
    assert torch.allclose(captured["w"], w.grad, atol=1e-6) and torch.allclose(captured["b"], b.grad, atol=1e-6)


def test_freed_memory_is_reused_without_page_faults():
    """grporm.process.allocator: a forward pass's large blocks come back from the heap, not as fresh pages
    (glibc otherwise maps a 64 MB block anew, and faults in its 16,384 pages, at every allocation)."""
    import resource

    from grporm.process.allocator import keep_freed_memory

    if not keep_freed_memory():
        pytest.skip("not glibc: the allocator keeps its own policy")

    def faults_of_a_64_mb_block() -> int:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        torch.empty(16 * 2**20).fill_(1.0)  # allocated, touched, freed
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

    # the first few grow the heap (each 64-byte-aligned block leaves a remainder behind it); then it is reused
    faults = [faults_of_a_64_mb_block() for _ in range(10)]
    assert max(faults[-3:]) < 1000, faults
