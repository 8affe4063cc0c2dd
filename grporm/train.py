"""The one training loop, shared by every method: only `objective.fn` differs between them.

Reads top to bottom: optimiser and schedule, resume, then epochs of batches; each batch is one
rollout (pi_old = the model's logits at its first forward pass) followed by `inner_steps`
optimiser steps; after each epoch, the caller's evaluation and a checkpoint.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from tqdm.auto import tqdm

from grporm.checkpoints import load_checkpoint, save_checkpoint
from grporm.config import RunConfig
from grporm.data import ImageSet, preprocess_batch
from grporm.errors import TrainingDiverged
from grporm.objectives import Objective


@dataclass
class FitResult:
    history: list[dict] = field(default_factory=list)  # one row per epoch, epoch 0 = before training
    train_seconds: float = 0.0
    images_seen: int = 0


def make_optimizer(params, run: RunConfig, lr: float) -> torch.optim.Optimizer:
    cls = torch.optim.AdamW if run.train.optimizer == "adamw" else torch.optim.Adam
    return cls(params, lr=lr, weight_decay=run.train.weight_decay)


def warmup_cosine(optimizer: torch.optim.Optimizer, total_steps: int, warmup_fraction: float):
    """Linear warmup, then cosine decay to zero over the remaining steps."""
    warmup = int(total_steps * warmup_fraction)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    # Order and augmentation derive from (seed, epoch) alone, so a resumed epoch replays exactly.
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


def fit(
    model: torch.nn.Module,
    objective: Objective,
    data: ImageSet,
    run: RunConfig,
    lr: float,
    epochs: int,
    input_spec: tuple,
    device: torch.device,
    checkpoint: Path | None = None,
    on_epoch: Callable[[int], dict] | None = None,
    on_step: Callable[[int, dict], None] | None = None,
    desc: str = "train",
) -> FitResult:
    batch_size = min(run.train.batch_size, len(data))
    steps_per_epoch = len(data) // batch_size  # drop the ragged last batch: batch norm needs > 1
    optimizer = make_optimizer([p for p in model.parameters() if p.requires_grad], run, lr)
    scheduler = warmup_cosine(optimizer, steps_per_epoch * epochs, run.train.warmup_fraction)
    reference = copy.deepcopy(model).eval().requires_grad_(False) if objective.needs_reference else None
    autocast = run.train.precision == "bf16"
    result = FitResult()
    start_epoch = 0

    state = load_checkpoint(checkpoint) if checkpoint is not None else None
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if reference is not None:
            reference.load_state_dict(state["reference"])
        torch.set_rng_state(state["rng_cpu"])
        start_epoch = state["epoch"]
        result.history, result.train_seconds, result.images_seen = (
            state["history"], state["train_seconds"], state["images_seen"]
        )
        tqdm.write(f"resumed {desc} from {checkpoint} at epoch {start_epoch}/{epochs}")
    elif on_epoch is not None:
        result.history.append({"epoch": 0, "train_seconds": 0.0, **on_epoch(0)})

    for epoch in range(start_epoch, epochs):
        model.train()
        generator = epoch_generator(run.seed, epoch)
        order = torch.randperm(len(data), generator=generator)
        tic = time.perf_counter()
        loss_sum = acc_sum = 0.0
        bar = tqdm(range(steps_per_epoch), desc=f"{desc} {epoch + 1}/{epochs}", leave=False, unit="step", disable=None)
        for step_in_epoch in bar:
            index = order[step_in_epoch * batch_size:(step_in_epoch + 1) * batch_size]
            x = preprocess_batch(data.images[index], *input_spec, run.train.augment, generator).to(device)
            targets = data.labels[index].to(device)
            step = epoch * steps_per_epoch + step_in_epoch
            old_logits = ref_logits = None
            for _ in range(objective.inner_steps):
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                    logits = model(x)
                    if reference is not None:
                        with torch.no_grad():
                            ref_logits = reference(x) if ref_logits is None else ref_logits
                if old_logits is None:
                    old_logits = logits.detach()  # the rollout: pi_old for every inner step
                loss, stats = objective.fn(
                    logits, targets, old_logits=old_logits, ref_logits=ref_logits,
                    generator=torch.Generator(device=device).manual_seed(run.seed * 7_919 + step),
                )
                if not torch.isfinite(loss):
                    raise TrainingDiverged(
                        f"loss became {loss.item()} at epoch {epoch + 1}, step {step}; lower train.lr "
                        f"or set train.grad_clip (the last good checkpoint is kept)"
                    )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if run.train.grad_clip is not None:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), run.train.grad_clip)
                optimizer.step()
            scheduler.step()
            loss_sum += stats["loss"]
            acc_sum += stats["acc"]
            result.images_seen += len(index)
            if on_step is not None and (step % run.train.log_every == 0 or step_in_epoch == steps_per_epoch - 1):
                on_step(step, {"epoch": epoch + 1, "lr": scheduler.get_last_lr()[0], **stats})
            bar.set_postfix(loss=f"{stats['loss']:.4f}", acc=f"{stats['acc']:.2f}")
        result.train_seconds += time.perf_counter() - tic

        row = {
            "epoch": epoch + 1,
            "train_seconds": result.train_seconds,
            "lr": scheduler.get_last_lr()[0],
            "train_loss": loss_sum / max(1, steps_per_epoch),
            "train_acc": acc_sum / max(1, steps_per_epoch),
        }
        if on_epoch is not None:
            row.update(on_epoch(epoch + 1))
        result.history.append(row)
        if checkpoint is not None:
            save_checkpoint(checkpoint, {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "reference": reference.state_dict() if reference is not None else None,
                "rng_cpu": torch.get_rng_state(),
                "epoch": epoch + 1,
                "history": result.history,
                "train_seconds": result.train_seconds,
                "images_seen": result.images_seen,
            })
    return result
