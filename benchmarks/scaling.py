"""Benchmark 4: peak memory of a training run, and how times grow with the problem's sizes.

- peak RSS of a small training run (`memory_probe`, one fresh process per measurement), per batch;
- full training step time (CE and GRPO-RM) vs batch size;
- objective time alone (forward + backward of `ce_loss` / `grpo_rm_loss` with their stats) on
  synthetic logits vs number of classes, 10 to 1000;
- evaluation time (SR at one L2, and kNN k = 20) vs number of training features, and vs number of
  classes.
Each growth is also summarised by its log-log slope (time ~ size^slope).
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

from benchmarks import memory_probe
from benchmarks.common import Sizes, build_model, gaussian_features, loglog_slope, run_config, summary
from benchmarks.step_ratio import make_step, time_steps

ROOT = Path(__file__).resolve().parent.parent


def memory(sizes: Sizes, threads: int, weights: str, log=print) -> dict:
    rows = []
    for batch in sizes.memory_batches:
        peaks, stages = [], []
        for _ in range(sizes.memory_repeats):
            cmd = [sys.executable, "-m", "benchmarks.memory_probe", "--batch", str(batch),
                   "--images", str(max(sizes.memory_images, 2 * batch)), "--eval-images",
                   str(sizes.memory_eval_images), "--size", str(sizes.image_size), "--classes",
                   str(sizes.num_classes), "--threads", str(threads), "--weights", weights]
            if sizes.memory_subprocess:
                env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
                done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
                if done.returncode != 0:
                    raise RuntimeError(f"memory probe failed ({' '.join(cmd)}):\n{done.stderr[-2000:]}")
                out = json.loads(done.stdout.strip().splitlines()[-1])
            else:  # smoke runs: same code, in this process (so the peak is this process's so far)
                with contextlib.redirect_stdout(io.StringIO()):
                    out = memory_probe.main(cmd[3:])
            peaks.append(out["peak_rss_mib"])
            stages.append(out["peak_rss_mib_by_stage"])
        log(f"  peak RSS at batch {batch}: {summary(peaks)['median']:.0f} MiB")
        rows.append({"batch": batch, "images": max(sizes.memory_images, 2 * batch),
                     "peak_rss_mib": summary(peaks), "by_stage_mib": stages[len(stages) // 2]})
    return {"method": "grpo_rm", "image_size": sizes.image_size, "rows": rows,
            "fresh_process": sizes.memory_subprocess,
            "what": ("fresh process" if sizes.memory_subprocess else "IN the benchmark process (smoke sizes)") + ": build model, fit 1 epoch (GRPO-RM, default settings), extract "
                    "features, SR + kNN; peak RSS (VmHWM) at the end of each stage"}


def step_vs_batch(sizes: Sizes, weights: str, log=print) -> dict:
    from grporm.objectives import build_objective

    model, _ = build_model(sizes.num_classes, weights)
    model.train()
    steps = {}
    for method in ("ce", "grpo_rm"):
        cfg = run_config(method, sizes.batch, sizes.image_size)
        steps[method] = make_step(model, build_objective(cfg), torch.optim.Adam(model.parameters(), lr=1e-4),
                                  cfg.train.grad_clip)
    rows = []
    for batch in sizes.scale_batches:
        g = torch.Generator().manual_seed(batch)
        x = torch.randn(batch, 3, sizes.image_size, sizes.image_size, generator=g)
        y = torch.randint(0, sizes.num_classes, (batch,), generator=g)
        times = {"ce": [], "grpo_rm": []}
        for method in steps:
            steps[method](x, y, 0)  # warm-up at this shape
        for r in range(sizes.scale_repeats):
            for method in (("ce", "grpo_rm") if r % 2 == 0 else ("grpo_rm", "ce")):
                times[method].append(time_steps(steps[method], x, y, 1, r))
        row = {"batch": batch, **{f"{m}_step_s": summary(v) for m, v in times.items()}}
        row["ratio"] = row["grpo_rm_step_s"]["median"] / row["ce_step_s"]["median"]
        row["ce_images_per_s"] = batch / row["ce_step_s"]["median"]
        rows.append(row)
        log(f"  step vs batch {batch}: CE {row['ce_step_s']['median'] * 1e3:.0f} ms, "
            f"GRPO-RM {row['grpo_rm_step_s']['median'] * 1e3:.0f} ms")
    xs = [r["batch"] for r in rows]
    return {"image_size": sizes.image_size, "rows": rows,
            "slope": {m: loglog_slope(xs, [r[f"{m}_step_s"]["median"] for r in rows]) for m in steps}}


def objective_vs_classes(sizes: Sizes, log=print) -> dict:
    from grporm.objectives import ce_loss, grpo_rm_loss

    fns = {"ce": ce_loss, "grpo_rm": grpo_rm_loss}
    b = sizes.scale_logit_batch
    rows = []
    for c in sizes.scale_classes:
        g = torch.Generator().manual_seed(c)
        base = torch.randn(b, c, generator=g) * 2
        y = torch.randint(0, c, (b,), generator=g)
        inner = 20

        def call(fn, base=base, y=y):
            logits = base.clone().requires_grad_()
            loss, _ = fn(logits, y, old_logits=logits.detach())
            loss.backward()

        times = {"ce": [], "grpo_rm": []}
        for name in fns:
            call(fns[name])
        for r in range(sizes.repeats):
            for name in (("ce", "grpo_rm") if r % 2 == 0 else ("grpo_rm", "ce")):
                tic = time.perf_counter()
                for _ in range(inner):
                    call(fns[name])
                times[name].append((time.perf_counter() - tic) / inner)
        row = {"classes": c, "batch": b, **{f"{m}_ms": summary([t * 1e3 for t in v]) for m, v in times.items()}}
        row["ratio"] = row["grpo_rm_ms"]["median"] / row["ce_ms"]["median"]
        rows.append(row)
        log(f"  objective vs classes {c}: CE {row['ce_ms']['median']:.2f} ms, "
            f"GRPO-RM {row['grpo_rm_ms']['median']:.2f} ms (x{row['ratio']:.1f})")
    xs = [r["classes"] for r in rows]
    return {"batch": b, "what": "forward + backward of the loss with its step statistics, on (B, C) logits",
            "rows": rows, "slope": {m: loglog_slope(xs, [r[f"{m}_ms"]["median"] for r in rows]) for m in fns}}


def _eval_times(n_train: int, n_test: int, dim: int, classes: int, sizes: Sizes) -> dict:
    from grporm.evaluate import knn_predict, softmax_regression

    xtr, ytr = gaussian_features(n_train, dim, classes, 1)
    xte, yte = gaussian_features(n_test, dim, classes, 3)
    sr, knn = [], []
    for _ in range(min(sizes.scale_repeats, sizes.eval_repeats)):
        tic = time.perf_counter()
        softmax_regression(xtr, ytr, xte, yte, l2_grid=(1e-3,), max_iter=sizes.scale_sr_max_iter,
                           num_classes=classes)
        sr.append(time.perf_counter() - tic)
        tic = time.perf_counter()
        knn_predict(xtr, ytr, xte, k=sizes.knn_k, num_classes=classes)
        knn.append(time.perf_counter() - tic)
    return {"sr_s": summary(sr), "knn_s": summary(knn)}


def eval_vs_train(sizes: Sizes, log=print) -> dict:
    rows = []
    for n in sizes.scale_train_feats:
        rows.append({"train": n, **_eval_times(n, sizes.scale_eval_test, sizes.eval_dim, sizes.eval_classes, sizes)})
        log(f"  eval vs train features {n}: SR {rows[-1]['sr_s']['median']:.2f} s, "
            f"kNN {rows[-1]['knn_s']['median']:.2f} s")
    xs = [r["train"] for r in rows]
    return {"test": sizes.scale_eval_test, "dim": sizes.eval_dim, "classes": sizes.eval_classes,
            "sr_max_iter": sizes.scale_sr_max_iter, "knn_k": sizes.knn_k, "rows": rows,
            "slope": {k: loglog_slope(xs, [r[f"{k}_s"]["median"] for r in rows]) for k in ("sr", "knn")}}


def eval_vs_classes(sizes: Sizes, log=print) -> dict:
    rows = []
    for c in sizes.scale_eval_classes:
        rows.append({"classes": c, **_eval_times(sizes.scale_eval_class_train, sizes.scale_eval_test,
                                                 sizes.eval_dim, c, sizes)})
        log(f"  eval vs classes {c}: SR {rows[-1]['sr_s']['median']:.2f} s, kNN {rows[-1]['knn_s']['median']:.2f} s")
    xs = [r["classes"] for r in rows]
    return {"train": sizes.scale_eval_class_train, "test": sizes.scale_eval_test, "dim": sizes.eval_dim,
            "sr_max_iter": sizes.scale_sr_max_iter, "knn_k": sizes.knn_k, "rows": rows,
            "slope": {k: loglog_slope(xs, [r[f"{k}_s"]["median"] for r in rows]) for k in ("sr", "knn")}}


def run(sizes: Sizes, threads: int, weights: str = "none", log=print) -> dict:
    return {
        "memory": memory(sizes, threads, weights, log),
        "step_vs_batch": step_vs_batch(sizes, weights, log),
        "objective_vs_classes": objective_vs_classes(sizes, log),
        "eval_vs_train_features": eval_vs_train(sizes, log),
        "eval_vs_classes": eval_vs_classes(sizes, log),
    }
