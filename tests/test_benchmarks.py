"""Smoke test of the benchmarks (`python -m benchmarks.run --quick`): the code runs at tiny sizes and
writes bench.json and BENCH.md with the expected keys. Nothing here checks a timing."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # benchmarks/ is a folder of scripts, not part of the installed package
    sys.path.insert(0, str(ROOT))

from benchmarks import report, run  # noqa: E402
from benchmarks.common import gaussian_features, loglog_slope, summary  # noqa: E402

GOAL_IDS = {"step_ratio", "loop_ratio", "eval_speedup", "eval_accuracy_sr", "eval_accuracy_knn", "memory_and_growth"}


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    threadpoolctl = pytest.importorskip("threadpoolctl")
    out = tmp_path_factory.mktemp("bench")
    threads = torch.get_num_threads()
    try:
        with threadpoolctl.threadpool_limits(limits=None):  # restores the BLAS pools on exit
            result = run.main(["--quick", "--threads", "1", "--out", str(out)], log=lambda msg: None)
    finally:
        torch.set_num_threads(threads)
    return out, result


@pytest.mark.slow
def test_quick_run_writes_json_with_every_benchmark_and_goal(quick):
    out, result = quick
    data = json.loads((out / "bench.json").read_text())
    assert data["quick"] is True
    assert {"cpu", "cores", "torch_threads", "torch", "sklearn"} <= set(data["machine"])
    assert data["machine"]["torch_threads"] == 1
    assert set(data["benchmarks"]) == {"step_ratio", "loop", "evaluation", "scaling"}
    assert {g["id"] for g in data["goals"]} == GOAL_IDS
    for goal in data["goals"]:
        assert {"median", "min", "max"} <= set(goal["measured"])
        assert goal["measured"]["min"] <= goal["measured"]["median"] <= goal["measured"]["max"]
        assert goal["met"] in (True, False, None)

    b = data["benchmarks"]
    assert {"ce", "grpo_rm"} == set(b["step_ratio"]["step_seconds"])
    assert {"fit", "fit_lean", "bare"} == set(b["loop"]["images_per_second"])
    assert any(k.startswith("grad_clip") for k in b["loop"]["profile_ms_per_step"])
    assert {"sr", "knn", "total"} == set(b["evaluation"]["speedup_sklearn_over_ours"])
    assert {"sr", "knn"} == set(b["evaluation"]["accuracy_diff_points"])
    for acc in b["evaluation"]["accuracy"].values():
        assert 0.0 <= acc["sr"] <= 1.0 and 0.0 <= acc["knn"] <= 1.0
    scaling = b["scaling"]
    assert {"memory", "step_vs_batch", "objective_vs_classes", "eval_vs_train_features", "eval_vs_classes"} <= set(scaling)
    assert scaling["memory"]["rows"][0]["peak_rss_mib"]["median"] > 0
    assert [r["classes"] for r in scaling["objective_vs_classes"]["rows"]] == list(run.Sizes.quick().scale_classes)
    for name in ("step_ratio", "loop", "evaluation", "scaling"):
        assert "load_average_1min_before" in b[name] and b[name]["wall_seconds"] >= 0


@pytest.mark.slow
def test_quick_run_writes_markdown_tables(quick):
    out, _ = quick
    md = (out / "BENCH.md").read_text()
    for heading in ("## Machine", "## Goals", "## 1.", "## 2.", "## 3.", "## 4."):
        assert heading in md
    assert "| benchmark | goal | measured: median [min, max] | met |" in md
    assert "torch threads" in md and "make bench" in md and "QUICK" in md
    for goal in ("<= 1.03", ">= 0.95", "abs(diff) <= 0.5"):
        assert goal in md
    goals = md.split("## Goals", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in goals.splitlines() if line.startswith("|")]
    assert len(rows) == 2 + len(GOAL_IDS) and len({line.count("|") for line in rows}) == 1  # no stray pipes


@pytest.mark.slow
def test_render_rewrites_markdown_from_json(quick, tmp_path):
    out, _ = quick
    again = run.main(["--render", str(out / "bench.json"), "--out", str(tmp_path)], log=lambda msg: None)
    assert again["goals"] and (tmp_path / "BENCH.md").read_text() == (out / "BENCH.md").read_text()


def test_goals_are_judged_on_the_median():
    def s(x):
        return summary([x * 0.9, x, x * 1.2])

    b = {
        "step_ratio": {"ratio": s(1.02)},
        "loop": {"ratio": {"fit": s(0.94)}},
        "evaluation": {"speedup_sklearn_over_ours": {"total": s(6.0)},
                       "accuracy_diff_points": {"sr": -0.4, "knn": 0.6}},
    }
    met = {g["id"]: g["met"] for g in report.goals(b)}
    assert met == {"step_ratio": True, "loop_ratio": False, "eval_speedup": None,
                   "eval_accuracy_sr": True, "eval_accuracy_knn": False}


def test_summary_and_slope():
    assert summary([3.0, 1.0, 2.0]) | {"values": None} == {"median": 2.0, "min": 1.0, "max": 3.0, "n": 3, "values": None}
    assert loglog_slope([1, 2, 4], [3, 12, 48]) == pytest.approx(2.0)


def test_sklearn_regularisation_matches_ours():
    """C = 1 / (2 l2 n) makes scikit-learn minimise our mean CE + l2 ||W||^2: same probabilities."""
    import importlib

    from benchmarks.evaluation import sklearn_logreg

    # the package re-exports a function of the module's name, so import the module by its path
    sr = importlib.import_module("grporm.evaluate.softmax_regression")
    fit = getattr(sr, "_fit", None)
    if fit is None:
        pytest.skip("grporm.evaluate.softmax_regression._fit is gone")
    x, y = gaussian_features(120, 8, 3, seed=0)
    x = (x - x.mean(0)) / x.std(0, unbiased=False)
    l2 = 1e-2
    w, b = fit(x, y, 3, l2, 500)
    ours = torch.softmax(x @ w + b, dim=1).numpy()
    theirs = sklearn_logreg(l2, len(y), 2000).set_params(tol=1e-10).fit(x.numpy(), y.numpy()).predict_proba(x.numpy())
    np.testing.assert_allclose(ours, theirs, atol=2e-3)


def test_every_judged_goal_is_one_the_docs_state():
    """`make bench` judges only the goals docs/times.md (linked from the README for the benchmarks) states;
    a retired goal (SR + kNN 5x faster than scikit-learn) is reported as a figure, never as NOT met."""
    section = (ROOT / "docs" / "times.md").read_text().split("## Benchmarks", 1)[1].split("\n## ", 1)[0]
    prose = " ".join(section.split())
    b = {"step_ratio": {"ratio": summary([1.0])}, "loop": {"ratio": {"fit": summary([1.0])}},
         "evaluation": {"speedup_sklearn_over_ours": {"total": summary([1.0])}, "accuracy_diff_points": {"sr": 0.0, "knn": 0.0}}}
    judged = [g for g in report.goals(b) if g["met"] is not None]
    assert judged and all(f"goal {g['goal']}" in prose or f"{g['goal']} points" in prose for g in judged), judged
    assert not any(g["goal"] == ">= 5" for g in report.goals(b)) and "5x faster" not in prose
