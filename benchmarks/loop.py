"""Benchmark 2: images/s of the suite's training loop (`grporm.training.train.Trainer.fit`) / a bare PyTorch loop's.

Same model object, batch, thread count and optimiser (Adam); one epoch over N in-memory images.

- `bare`: the data already in memory as preprocessed float tensors (B, 3, S, S); per batch only
  forward, cross-entropy, zero_grad, backward, Adam step.
- `fit` (the headline): `fit` with the CE objective and the suite's default training settings
  (flip + shift augmentation, gradient clipping at 1.0, warmup-cosine schedule, per-step stats),
  fed uint8 28x28 grey images as a Fashion-MNIST run is, so it resizes, augments and normalises
  every batch itself.
- `fit_lean`: `fit` with augmentation and clipping off and the same images already resized to
  uint8 3 x S x S, so what remains is the loop's own bookkeeping (uint8 -> float, normalise,
  stats, scheduler, tqdm).
All three see the same pictures (random 28x28 grey, resized once for `fit_lean` and `bare`).

The three are timed in rotating order in every repeat; the ratio is taken per repeat. A profile
times each per-step extra of `fit` on its own, so a shortfall can be attributed.
"""
from __future__ import annotations

import sys
import time

import torch
import torch.nn.functional as F

from benchmarks.common import Sizes, build_model, run_config, summary, synthetic_images, time_ms


def bare_epoch(model, x_all: torch.Tensor, y_all: torch.Tensor, batch: int, lr: float, seed: int) -> int:
    """The plain loop: shuffled batches of ready float tensors, forward / CE / backward / step."""
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    order = torch.randperm(len(y_all), generator=torch.Generator().manual_seed(seed))
    steps = len(y_all) // batch
    for i in range(steps):
        index = order[i * batch:(i + 1) * batch]
        loss = F.cross_entropy(model(x_all[index]), y_all[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return steps * batch


def fit_epoch(model, data, cfg, input_spec) -> int:
    from grporm.objectives import build_objective
    from grporm.training.train import Trainer

    trainer = Trainer(model, build_objective(cfg), data, cfg, input_spec, torch.device("cpu"), desc="bench")
    result = trainer.fit(cfg.train.lr, epochs=1)
    return result.images_seen


def profile(model, backbone, sizes: Sizes, data_default, data_lean, cfg_default, repeats: int) -> dict:
    """Milliseconds per step of each thing `fit` does that the bare loop does not."""
    from grporm.data import InputSpec
    from grporm.objectives import ce_loss
    from grporm.training.train import make_optimizer, warmup_cosine

    b, s = sizes.batch, sizes.image_size
    spec = InputSpec(s, backbone.mean, backbone.std)
    gen = torch.Generator().manual_seed(0)
    index = torch.randperm(len(data_default), generator=gen)[:b]
    logits = torch.randn(b, sizes.num_classes)
    targets = torch.randint(0, sizes.num_classes, (b,), generator=gen)
    model.train()
    loss = F.cross_entropy(model(spec.preprocess(data_lean.images[index])), targets)
    loss.backward()
    optimizer = make_optimizer(model.parameters(), cfg_default, 1e-4)
    scheduler = warmup_cosine(optimizer, 10**9, 0.1)
    optimizer.step()  # so scheduler.step() below follows an optimiser step, as in fit
    from tqdm.auto import tqdm

    bar = tqdm(range(10**9), disable=None, leave=False)
    iterator = iter(bar)

    def tqdm_tick():
        next(iterator)
        bar.set_postfix(loss=f"{0.5:.4f}", acc=f"{0.5:.2f}")

    parts = {
        "preprocess_default (28px grey -> resize, flip+shift, normalise)": lambda: spec.preprocess(
            data_default.images[index], cfg_default.train.augment, gen),
        "preprocess_lean (uint8 3xSxS -> float, normalise)": lambda: spec.preprocess(data_lean.images[index]),
        "grad_clip (clip_grad_norm_ 1.0)": lambda: torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0),
        "ce_loss with stats (vs F.cross_entropy)": lambda: ce_loss(logits, targets),
        "F.cross_entropy alone": lambda: F.cross_entropy(logits, targets),
        "isfinite check + Generator per step": lambda: (bool(torch.isfinite(logits[0, 0])),
                                                        torch.Generator().manual_seed(1)),
        "scheduler.step": scheduler.step,
        "tqdm update + set_postfix": tqdm_tick,
    }
    out = {name: time_ms(fn, repeats) for name, fn in parts.items()}
    bar.close()
    out["ce_loss stats overhead"] = summary([
        a - c for a, c in zip(out["ce_loss with stats (vs F.cross_entropy)"]["values"],
                              out["F.cross_entropy alone"]["values"])])
    return out


def run(sizes: Sizes, weights: str = "none", log=print) -> dict:
    from grporm.data import ImageSet, InputSpec

    model, backbone = build_model(sizes.num_classes, weights)
    s, b = sizes.image_size, sizes.batch
    input_spec = InputSpec(s, backbone.mean, backbone.std)
    data_default = synthetic_images(sizes.loop_images, sizes.num_classes, size=28, channels=1)
    # The same pictures already at S x S x 3 (resized once), so all three loops see the same pixels.
    resized = F.interpolate(data_default.images.float(), size=(s, s), mode="bilinear", align_corners=False,
                            antialias=True).round().clamp(0, 255).to(torch.uint8)
    data_lean = ImageSet(resized.expand(-1, 3, -1, -1).contiguous(), data_default.labels.clone(),
                         list(data_default.classes))
    cfg_default = run_config("ce", b, s, lr=1e-4)
    cfg_lean = run_config("ce", b, s, lr=1e-4, grad_clip=None, augment={"hflip": False, "shift": 0.0})
    # The bare loop's tensors: preprocessed once, up front (data already in memory).
    x_all = input_spec.preprocess(data_lean.images)
    y_all = data_lean.labels.clone()

    loops = {
        "fit": lambda: fit_epoch(model, data_default, cfg_default, input_spec),
        "fit_lean": lambda: fit_epoch(model, data_lean, cfg_lean, input_spec),
        "bare": lambda: bare_epoch(model, x_all, y_all, b, 1e-4, 0),
    }
    # Warm-up with one short epoch each (allocator, oneDNN kernels, tqdm import).
    warm = sizes.batch * 2
    fit_epoch(model, data_default.subset(torch.arange(warm)), cfg_default, input_spec)
    bare_epoch(model, x_all[:warm], y_all[:warm], b, 1e-4, 0)

    ips: dict[str, list[float]] = {k: [] for k in loops}
    ratios: dict[str, list[float]] = {"fit": [], "fit_lean": []}
    names = list(loops)
    for r in range(sizes.loop_repeats):
        order = names[r % 3:] + names[:r % 3]
        for name in order:
            tic = time.perf_counter()
            images = loops[name]()
            ips[name].append(images / (time.perf_counter() - tic))
        for name in ratios:
            ratios[name].append(ips[name][-1] / ips["bare"][-1])
        log(f"  loop repeat {r + 1}/{sizes.loop_repeats}: fit {ips['fit'][-1]:.1f} img/s, fit_lean "
            f"{ips['fit_lean'][-1]:.1f}, bare {ips['bare'][-1]:.1f}; ratio {ratios['fit'][-1]:.3f}")

    prof = profile(model, backbone, sizes, data_default, data_lean, cfg_default, max(5, sizes.loop_repeats))
    bare_step_ms = 1e3 * b / summary(ips["bare"])["median"]
    return {
        "backbone": "tf_efficientnet_lite0",
        "weights": weights,
        "batch": b,
        "image_size": s,
        "images_per_epoch": sizes.loop_images,
        "steps_per_epoch": sizes.loop_images // b,
        "tqdm_active": sys.stderr.isatty(),
        "images_per_second": {k: summary(v) for k, v in ips.items()},
        "ratio": {k: summary(v) for k, v in ratios.items()},
        "ratio_of_best": {k: max(ips[k]) / max(ips["bare"]) for k in ratios},
        "bare_step_ms": bare_step_ms,
        "profile_ms_per_step": prof,
    }
