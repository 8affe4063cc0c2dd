"""Benchmarks of the grporm suite: `python -m benchmarks.run [--quick]`.

Four benchmarks, each measured side by side in one process, every figure the median of several
repeats with its min and max:

1. `step_ratio`  GRPO-RM training step time / CE training step time (same backbone, batch, model).
2. `loop`        `grporm.training.train.Trainer.fit` images/s / a bare PyTorch loop's images/s.
3. `evaluation`  SR + kNN on cached features vs scikit-learn: time ratio and accuracy difference.
4. `scaling`     peak RSS of a training run; step and evaluation time vs batch size, number of
                 classes and number of training features.

Results go to `results/bench/bench.json` and `results/bench/BENCH.md`. These are benchmarks that
print figures, not timed tests: nothing here fails when a goal is missed.
"""
