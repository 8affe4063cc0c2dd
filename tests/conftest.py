"""Fixtures shared by the test files: hand-made run records in the shapes the runner writes, so the
analysis is tested on records made for the test, not on the committed results."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

FM, BB = "fashion_mnist", "tf_efficientnet_lite0"


def hand_made_run(root: Path, experiment: str, run_id: str, *, method: str, seed: int, sr: float, dataset: str = FM,
              knn20: float | None = None, head: float | None = None, status: str = "finished", axes: dict | None = None,
              extra: dict | None = None, imbalance_factor=None, history: list[float] | None = None,
              steps: bool = False, train_seconds: float = 10.0) -> Path:
    """One run folder; every accuracy derives from ``sr`` so expected values are easy to compute."""
    knn20 = sr - 0.02 if knn20 is None and sr is not None else knn20
    run_dir = root / experiment / "runs" / run_id
    run_dir.mkdir(parents=True)
    record = {
        "run_id": run_id, "experiment": experiment, "status": status,
        "error": "TrainingDiverged: loss became nan at step 3" if status == "failed" else None,
        "method": method, "dataset": dataset, "backbone": BB, "seed": seed,
        "axes": {"model.name": BB, "method": method, "seed": seed, **(axes or {})},
        "config_hash": hashlib.sha256(run_id.encode()).hexdigest()[:12],
        "config": {"method": method, "train": {"epochs": 4},
                   "data": {"name": dataset, "imbalance_factor": imbalance_factor, "train_per_class": 200,
                            "image_size": 32},
                   "eval": {"shot_thresholds": [20, 100]}},
        "metrics": {"head_top1": head, "ece": None, "sr_top1": sr, "knn_top1": {"20": knn20}, **(extra or {})},
        "timing": {"train_seconds": 0.0 if method == "pretrained" else train_seconds, "total_seconds": 30.0 + seed,
                   "train_images_per_second": None if method == "pretrained" else 100.0 * (seed + 1),
                   "peak_memory_mb": 1000.0 + seed},
        "env": {"python": "3.11.7", "torch": "2.14.1", "cpu": "Fake CPU", "cpu_count": 2, "torch_threads": 2,
                "git_commit": "abc1234"},
        "started_at": "2025-01-01T00:00:00+00:00", "finished_at": "2025-01-01T01:00:00+00:00",
    }
    for key, value in (axes or {}).items():  # a matrix axis is a setting of the run's config too
        if key.count(".") == 1 and key.split(".")[0] in ("train", "data"):
            section, name = key.split(".")
            record["config"][section][name] = value
    (run_dir / "record.json").write_text(json.dumps(record))
    if history is not None:
        lines = ["epoch,train_seconds,knn20_top1,sr_top1"] + [f"{e},{e * 4.0 + seed},{v},{v + 0.01}"
                                                              for e, v in enumerate(history)]
        (run_dir / "history.csv").write_text("\n".join(lines) + "\n")
    if steps:
        lines = ["step,epoch,loss,reward_mean,clip_frac,entropy,pi_y"]
        lines += [f"{s},1,0.5,{0.1 * s},0.0,{2.0 - 0.1 * s},{0.1 + 0.05 * s}" for s in range(6)]
        (run_dir / "steps.csv").write_text("\n".join(lines) + "\n")
    return run_dir


@pytest.fixture(scope="session")
def write_run():
    """`write_run(root, experiment, run_id, method=..., seed=..., sr=..., ...)` -> the run folder it wrote
    (see `hand_made_run`)."""
    return hand_made_run
