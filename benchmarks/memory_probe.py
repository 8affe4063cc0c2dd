"""Peak resident memory of one small training run, in a fresh process so the peak is its own.

`python -m benchmarks.memory_probe --batch 64 ...` builds the suite's model, trains one epoch with
`grporm.training.train.Trainer.fit` (GRPO-RM by default, the default training settings), extracts features with
`grporm.evaluate.features.extract` and runs SR and kNN on them, printing one JSON line: the peak
RSS (VmHWM, MiB) reached by the end of each stage.
"""
from __future__ import annotations

import argparse
import json

from grporm.records.storage import peak_memory_mib as peak_mib


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--images", type=int, default=256)
    p.add_argument("--eval-images", type=int, default=512)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--weights", default="none")
    p.add_argument("--method", default="grpo_rm")
    args = p.parse_args(argv)

    stages = {"start": peak_mib()}
    import torch

    from benchmarks.common import build_model, run_config, set_threads, synthetic_images
    from grporm.data import InputSpec
    from grporm.evaluate import knn_predict, softmax_regression
    from grporm.evaluate.features import extract
    from grporm.objectives import build_objective
    from grporm.training.train import Trainer

    set_threads(args.threads)
    stages["imports"] = peak_mib()
    model, backbone = build_model(args.classes, args.weights)
    spec = InputSpec(args.size, backbone.mean, backbone.std)
    train = synthetic_images(args.images, args.classes)
    test = synthetic_images(args.eval_images, args.classes, seed=1)
    stages["model_and_data"] = peak_mib()
    cfg = run_config(args.method, args.batch, args.size)
    Trainer(model, build_objective(cfg), train, cfg, spec, torch.device("cpu"), desc="memory").fit(1e-4, epochs=1)
    stages["train"] = peak_mib()
    f_train, _ = extract(model, train, spec, 256, torch.device("cpu"))
    f_test, _ = extract(model, test, spec, 256, torch.device("cpu"))
    softmax_regression(f_train, train.labels, f_test, test.labels, max_iter=20)
    knn_predict(f_train, train.labels, f_test, k=20)
    stages["eval"] = peak_mib()
    out = {"args": vars(args), "peak_rss_mib_by_stage": stages, "peak_rss_mib": peak_mib()}
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
