"""Benchmark 1: GRPO-RM training step time / CE training step time.

Same model object, same batch, same optimiser; only the objective differs, and both objectives come
from the suite itself (`grporm.objectives.build_objective`). One step is exactly the body of
`grporm.training.train.fit`'s inner loop: forward, rollout (pi_old = detached logits), objective with its
statistics, finiteness check, zero_grad, backward, gradient clipping (the default 1.0), Adam step.

The two objectives are measured in A B B A order within each repeat (CE, GRPO-RM, GRPO-RM, CE, then
GRPO-RM, CE, CE, GRPO-RM in the next), so a change in machine load hits both; the ratio is taken per
repeat (paired) and summarised.
"""
from __future__ import annotations

import time

import torch

from benchmarks.common import Sizes, build_model, run_config, summary


def make_step(model, objective, optimizer, grad_clip: float | None = 1.0):
    """One training step of `fit` for `objective`, as a closure over the model and optimiser."""

    def step(x: torch.Tensor, targets: torch.Tensor, seed: int) -> float:
        logits = model(x)
        old_logits = logits.detach()
        loss, stats = objective.fn(
            logits, targets, old_logits=old_logits, ref_logits=None,
            generator=torch.Generator().manual_seed(seed),
        )
        if not torch.isfinite(loss):
            raise RuntimeError(f"non-finite loss {loss.item()} in the benchmark")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        return stats["loss"]

    return step


def time_steps(step, x, targets, n: int, seed: int) -> float:
    """Seconds per step, averaged over `n` consecutive steps."""
    tic = time.perf_counter()
    for i in range(n):
        step(x, targets, seed + i)
    return (time.perf_counter() - tic) / n


def objective_only(sizes: Sizes, objectives: dict, inner: int = 20) -> dict:
    """ms of each objective alone (forward + backward on (B, C) logits, with its stats) at this batch.

    The only work a GRPO-RM step adds over a CE step, timed without the backbone's noise: the ratio
    of the whole steps should be close to 1 + (this difference) / (CE step time).
    """
    g = torch.Generator().manual_seed(1)
    base = torch.randn(sizes.batch, sizes.num_classes, generator=g)
    targets = torch.randint(0, sizes.num_classes, (sizes.batch,), generator=g)

    def call(objective):
        logits = base.clone().requires_grad_()
        loss, _ = objective.fn(logits, targets, old_logits=logits.detach(), ref_logits=None,
                               generator=torch.Generator().manual_seed(0))
        loss.backward()

    out: dict[str, list[float]] = {m: [] for m in objectives}
    for objective in objectives.values():
        call(objective)
    for r in range(sizes.repeats):
        for m in (list(objectives) if r % 2 == 0 else list(objectives)[::-1]):
            tic = time.perf_counter()
            for _ in range(inner):
                call(objectives[m])
            out[m].append((time.perf_counter() - tic) / inner * 1e3)
    return {m: summary(v) for m, v in out.items()}


def run(sizes: Sizes, weights: str = "none", log=print) -> dict:
    from grporm.objectives import build_objective

    model, _ = build_model(sizes.num_classes, weights)
    model.train()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(sizes.batch, 3, sizes.image_size, sizes.image_size, generator=g)
    targets = torch.randint(0, sizes.num_classes, (sizes.batch,), generator=g)
    steps = {}
    for method in ("ce", "grpo_rm"):
        cfg = run_config(method, sizes.batch, sizes.image_size)
        objective = build_objective(cfg)
        # One optimiser per objective over the same parameters: Adam's state is per objective,
        # so neither objective inherits the other's moments.
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
        steps[method] = make_step(model, objective, optimizer, cfg.train.grad_clip)
        steps[method](x, targets, 0)  # warm-up: allocator, Adam state, oneDNN kernels

    times: dict[str, list[float]] = {"ce": [], "grpo_rm": []}
    ratios: list[float] = []
    for r in range(sizes.repeats):
        # A B B A within a repeat (and B A A B in the next): a drift in machine load over the
        # repeat hits both objectives alike.
        first, second = ("ce", "grpo_rm") if r % 2 == 0 else ("grpo_rm", "ce")
        spent = {"ce": 0.0, "grpo_rm": 0.0}
        for method in (first, second, second, first):
            spent[method] += time_steps(steps[method], x, targets, sizes.steps_per_repeat, 1000 * r)
        for method in spent:
            times[method].append(spent[method] / 2)
        ratios.append(times["grpo_rm"][-1] / times["ce"][-1])
        log(f"  step ratio repeat {r + 1}/{sizes.repeats}: CE {times['ce'][-1] * 1e3:.0f} ms, "
            f"GRPO-RM {times['grpo_rm'][-1] * 1e3:.0f} ms, ratio {ratios[-1]:.3f}")
    objective_ms = objective_only(sizes, objectives={m: build_objective(run_config(m, sizes.batch, sizes.image_size))
                                                    for m in ("ce", "grpo_rm")})
    ce_step_ms = 1e3 * summary(times["ce"])["median"]
    extra_ms = objective_ms["grpo_rm"]["median"] - objective_ms["ce"]["median"]
    return {
        "objective_ms": objective_ms,
        "expected_ratio_from_objective": 1.0 + extra_ms / ce_step_ms,
        "backbone": "tf_efficientnet_lite0",
        "weights": weights,
        "batch": sizes.batch,
        "image_size": sizes.image_size,
        "num_classes": sizes.num_classes,
        "steps_per_repeat": sizes.steps_per_repeat,
        "step_seconds": {m: summary(v) for m, v in times.items()},
        "ratio": summary(ratios),
        "ratio_of_medians": summary(times["grpo_rm"])["median"] / summary(times["ce"])["median"],
        "ratio_of_minima": min(times["grpo_rm"]) / min(times["ce"]),
    }
