"""The training loop, with the training step apart from it.

Two independent streams of training images feed every step, as in the JEM code: a labelled batch for
cross-entropy and a second batch for the maximum-likelihood branch. Both are augmented (when
``train.common.augment``) and noised with ``train.common.data_noise``.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ebm.augment import add_noise, augment, to_tensor
from ebm.config import Params, TrainCommon
from ebm.data import DatasetArrays
from ebm.models import build_model
from ebm.objectives import Batch, Objective, build_objective


class DivergenceError(RuntimeError):
    """Training diverged: a non-finite or exploding loss. Carries the step and the offending values."""

    def __init__(self, step: int, values: dict[str, float], reason: str):
        self.step, self.values, self.reason = step, values, reason
        vals = ", ".join(f"{k}={v:.4g}" for k, v in values.items())
        super().__init__(f"training diverged at step {step}: {reason} ({vals})")


class BatchStream:
    """Epoch-wise shuffled minibatches of indices (sampling without replacement within an epoch)."""

    def __init__(self, n: int, batch_size: int, generator: torch.Generator):
        self.n, self.batch_size, self.gen = n, batch_size, generator
        self.perm = torch.randperm(n, generator=generator)
        self.pos = 0

    def next(self) -> torch.Tensor:
        if self.pos + self.batch_size > self.n:
            self.perm, self.pos = torch.randperm(self.n, generator=self.gen), 0
        idx = self.perm[self.pos:self.pos + self.batch_size]
        self.pos += self.batch_size
        return idx


def lr_at(step: int, c: TrainCommon) -> float:
    """Linear warm-up over ``warmup_steps``, then × ``decay_factor`` at each fraction in ``decay_at``."""
    lr = c.lr * min(1.0, (step + 1) / c.warmup_steps) if c.warmup_steps > 0 else c.lr
    return lr * c.decay_factor ** sum(step >= int(f * c.steps) for f in c.decay_at)


def make_optimizer(model: nn.Module, c: TrainCommon) -> torch.optim.Optimizer:
    if c.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=c.lr, weight_decay=c.weight_decay)
    return torch.optim.SGD(model.parameters(), lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay)


def train_step(model: nn.Module, objective: Objective, opt: torch.optim.Optimizer, batch: Batch,
               ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One optimizer step; returns the loss and the objective's scalars (still on the device)."""
    model.train()
    loss, logs = objective.loss(model, batch)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.detach(), logs


@dataclass
class TrainResult:
    model: nn.Module
    objective: Objective
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0


def check_divergence(step: int, logs: dict[str, float], threshold: float) -> None:
    bad = {k: v for k, v in logs.items() if not math.isfinite(v)}
    if bad:
        raise DivergenceError(step, bad, "non-finite value")
    if abs(logs["loss"]) > threshold:
        raise DivergenceError(step, {"loss": logs["loss"]}, f"|loss| > {threshold:g}")


def train(params: Params, objective_name: str, data: DatasetArrays, device: torch.device, *,
          log_every: int = 10, on_log: Callable[[dict], None] | None = None,
          progress: bool = True) -> TrainResult:
    c = params.train.common
    torch.manual_seed(c.seed)
    np.random.seed(c.seed)
    gen = torch.Generator().manual_seed(c.seed)
    n_classes = len(data.classes)
    model = build_model(params.model, n_classes).to(device)
    objective = build_objective(objective_name, params, n_classes=n_classes).to(device)
    opt = make_optimizer(model, c)
    x_all = to_tensor(data.x_train).to(device)  # (N, 3, 32, 32)
    y_all = torch.from_numpy(data.y_train).to(device)  # (N,)
    lab, unl = BatchStream(len(y_all), c.batch_size, gen), BatchStream(len(y_all), c.batch_size, gen)

    def prep(x: torch.Tensor) -> torch.Tensor:
        return add_noise(augment(x) if c.augment else x, c.data_noise)

    result = TrainResult(model, objective)
    t0 = time.perf_counter()
    bar = tqdm(range(c.steps), desc=f"train {objective_name}", disable=not progress, mininterval=2)
    for step in bar:
        for g in opt.param_groups:
            g["lr"] = lr_at(step, c)
        i, j = lab.next().to(device), unl.next().to(device)
        batch = Batch(x_lab=prep(x_all[i]), y=y_all[i], x_px=prep(x_all[j]))
        _, logs = train_step(model, objective, opt, batch)
        if step % log_every == 0 or step == c.steps - 1:
            row = {"step": step, "lr": opt.param_groups[0]["lr"], **{k: float(v) for k, v in logs.items()},
                   "seconds": time.perf_counter() - t0}
            check_divergence(step, {k: v for k, v in row.items() if k not in ("step",)}, c.diverge_threshold)
            result.history.append(row)
            bar.set_postfix(loss=f"{row['loss']:.3f}", acc=f"{row['acc']:.2f}")
            if on_log:
                on_log(row)
    result.seconds = time.perf_counter() - t0
    return result
