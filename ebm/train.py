"""The training loop, with the training step apart from it.

Two independent streams of training images feed every step, as in the JEM code: a labelled batch for
cross-entropy and a second batch for the maximum-likelihood branch. Both are augmented as
``train.augment.<dataset>`` says and noised with ``train.common.data_noise``.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import random
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ebm.augment import add_noise, augment, to_tensor
from ebm.checkpoint import ResumeStore
from ebm.config import Params, TrainCommon
from ebm.data import DatasetArrays
from ebm.distributed import (World, all_reduce_mean, no_sync, per_rank_params, rank_seed, reduce_step, shard,
                             unwrap, wrap)
from ebm.errors import DivergenceError
from ebm.models import build_model
from ebm.objectives import Batch, Objective, build_objective
from ebm.objectives.base import summed
from ebm.sam import SAM


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

    def state_dict(self) -> dict:
        return {"perm": self.perm.clone(), "pos": self.pos}

    def load_state_dict(self, state: dict) -> None:
        self.perm, self.pos = state["perm"].clone(), int(state["pos"])


def lr_at(step: int, c: TrainCommon) -> float:
    """Linear warm-up over ``warmup_steps``, then × ``decay_factor`` at each fraction in ``decay_at``."""
    lr = c.lr * min(1.0, (step + 1) / c.warmup_steps) if c.warmup_steps > 0 else c.lr
    return lr * c.decay_factor ** sum(step >= int(f * c.steps) for f in c.decay_at)


def make_optimizer(model: nn.Module, c: TrainCommon) -> torch.optim.Optimizer:
    if c.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=c.lr, weight_decay=c.weight_decay)
    return torch.optim.SGD(model.parameters(), lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay)


class SplitOptimizer:
    """Two optimizer states over the same weights: ``ce`` steps with the cross-entropy's gradient (in each
    parameter's ``.grad``), ``rest`` with the rest of the loss's (:attr:`rest_grads`, set before each step) at
    ``share`` × ``ce``'s learning rate. With Adam each term's step then has its own per-coordinate scale, so
    a noisy p(x) gradient no longer shrinks the cross-entropy's step. Weight decay is applied once, in
    ``ce``. The train loop sets the learning rate through :attr:`param_groups` (``ce``'s); SAM may wrap it."""

    def __init__(self, model: nn.Module, c: TrainCommon, share: float):
        self.ce = make_optimizer(model, c)
        self.rest = make_optimizer(model, dataclasses.replace(c, weight_decay=0.0))
        self.share = share
        self.rest_grads: list[torch.Tensor] | None = None  # None: no rest term this step, ``rest`` does not step

    @property
    def param_groups(self) -> list[dict]:
        return self.ce.param_groups

    def params(self) -> list[torch.Tensor]:
        return [p for g in self.ce.param_groups for p in g["params"] if p.requires_grad]

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.ce.zero_grad(set_to_none=set_to_none)
        self.rest_grads = None

    @torch.no_grad()
    def step(self) -> None:
        self.ce.step()
        if self.rest_grads is None:
            return
        for g_rest, g_ce in zip(self.rest.param_groups, self.ce.param_groups):
            g_rest["lr"] = g_ce["lr"] * self.share
        for p, g in zip(self.params(), self.rest_grads):
            p.grad = g
        self.rest.step()
        self.rest_grads = None

    def state_dict(self) -> dict:
        return {"ce": self.ce.state_dict(), "rest": self.rest.state_dict(), "share": self.share}

    def load_state_dict(self, state: dict) -> None:
        self.ce.load_state_dict(state["ce"])
        self.rest.load_state_dict(state["rest"])
        self.share = float(state["share"])


def autocast(device: torch.device, bf16: bool) -> Callable[[], contextlib.AbstractContextManager]:
    """The ``amp`` argument of :func:`train_step`: bf16 autocast on ``device``, or nothing."""
    if not bf16:
        return contextlib.nullcontext
    return lambda: torch.autocast(device.type, dtype=torch.bfloat16)


def train_step(model: nn.Module, objective: Objective, opt: torch.optim.Optimizer, batch: Batch,
               amp: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
               ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One optimizer step; returns the loss and the objective's scalars (still on the device).
    ``amp`` wraps the forward passes (e.g. bf16 autocast); backward runs outside it."""
    if isinstance(getattr(opt, "base", opt), SplitOptimizer):
        return split_step(model, objective, opt, batch, amp)
    model.train()
    with amp():
        loss, logs = objective.loss(model, batch)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if isinstance(opt, SAM):  # second pass at w + ε(w) with the same samples, batch-norm stats frozen
        opt.first_step()
        with frozen_bn_stats(model), amp():
            second = objective.perturbed_loss(model, batch)
        opt.zero_grad(set_to_none=True)
        second.backward()
        opt.second_step()
    else:
        opt.step()
    return loss.detach(), logs


def split_step(model: nn.Module, objective: Objective, opt: SplitOptimizer | SAM, batch: Batch,
               amp: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
               ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """:func:`train_step` with a :class:`SplitOptimizer` (in SAM or not): the cross-entropy's and the rest's
    gradients are taken apart (two ``autograd.grad`` calls) and each steps its own optimizer state. Under
    SAM, ε(w) comes from the whole gradient, as in :func:`train_step`, and both parts are taken again at
    w + ε. With several processes the forward passes run in DDP's ``no_sync`` and the two gradients are
    averaged over the ranks here (``autograd.grad`` does not reach DDP's reducer)."""
    split = getattr(opt, "base", opt)
    params = split.params()
    model.train()
    with no_sync(model), amp():
        ce, rest, logs = objective.terms(model, batch)
    loss, logs = summed(ce, rest, logs)
    g_ce, g_rest = _split_grads(ce, rest, params)
    if isinstance(opt, SAM):
        whole = g_ce if g_rest is None else [g + r for g, r in zip(g_ce, g_rest)]
        for p, g in zip(params, whole):
            p.grad = g
        opt.first_step()
        with frozen_bn_stats(model), no_sync(model), amp():
            ce2, rest2 = objective.perturbed_terms(model, batch)
        g_ce, g_rest = _split_grads(ce2, rest2, params)
    for p, g in zip(params, g_ce):
        p.grad = g
    split.rest_grads = g_rest
    opt.second_step() if isinstance(opt, SAM) else opt.step()
    return loss.detach(), logs


def _split_grads(ce: torch.Tensor, rest: torch.Tensor | None, params: list[torch.Tensor]
                 ) -> tuple[list[torch.Tensor], list[torch.Tensor] | None]:
    """∇ of ``ce`` and of ``rest`` (None when there is no rest) over ``params``, averaged over the ranks in one
    all-reduce. A weight a term does not use gets a zero gradient from it (every weight of the WRN is in both)."""
    grads = list(torch.autograd.grad(ce, params, retain_graph=rest is not None, allow_unused=True,
                                     materialize_grads=True))
    if rest is not None:
        grads += torch.autograd.grad(rest, params, allow_unused=True, materialize_grads=True)
    grads = all_reduce_mean(grads)
    n = len(params)
    return grads[:n], (grads[n:] if rest is not None else None)


@contextlib.contextmanager
def frozen_bn_stats(model: nn.Module):
    """Batch norm keeps normalising with batch statistics but does not update its running ones."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, mom in zip(bns, saved):
            m.momentum = mom


def divergence(loss: float, logs: dict[str, float], c: TrainCommon) -> str | None:
    """Why this step counts as divergence, or None. Checked every step (one host read per step)."""
    if not math.isfinite(loss) or not all(math.isfinite(v) for v in logs.values()):
        return "non-finite loss or energy"
    if abs(loss) > c.diverge_threshold:
        return f"|loss| > {c.diverge_threshold:g}"
    if "e_sample" in logs and abs(logs["e_data"] - logs["e_sample"]) > c.energy_gap_threshold:
        return f"|E(data) - E(samples)| > {c.energy_gap_threshold:g}"
    return None


@dataclass
class TrainResult:
    model: nn.Module
    objective: Objective
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    retries: int = 0
    resumed_from: int | None = None


class Trainer:
    """Owns everything a run's state is made of, so it can be snapshot, rolled back and resumed."""

    def __init__(self, params: Params, objective_name: str, data: DatasetArrays, device: torch.device, *,
                 channels_last: bool = False, world: World = World()):
        c = self.c = params.train.common
        self.world = world
        seed = rank_seed(c.seed, world.rank)  # the plain seed on rank 0
        torch.manual_seed(seed)
        np.random.seed(seed)
        random.seed(seed)
        self.device = device
        self.aug = params.train.augment[data.name]  # the checks require one per dataset in `datasets`
        self.gen = torch.Generator().manual_seed(c.seed)  # data order: the same permutation on every rank
        n_classes = len(data.classes)
        self.model = build_model(params.model, n_classes).to(device)
        self.x_all = to_tensor(data.x_train).to(device)  # (N, 3, 32, 32)
        if channels_last:  # NHWC kernels (oneDNN on CPU: bench/README.md); results equal up to float rounding
            self.model = self.model.to(memory_format=torch.channels_last)
            self.x_all = self.x_all.contiguous(memory_format=torch.channels_last)
        self.y_all = torch.from_numpy(data.y_train).to(device)  # (N,)
        self.objective = build_objective(objective_name, per_rank_params(params, objective_name, world),
                                         n_classes=n_classes, data=(self.x_all, self.y_all)).to(device)
        self.net = wrap(self.model, world, device)  # DDP with several processes; forward passes go through it
        self.model = unwrap(self.net)  # the weights (SyncBatchNorm may have replaced modules)
        share = self.objective.split_share
        self.opt = SplitOptimizer(self.model, c, share) if share > 0 else make_optimizer(self.model, c)
        if self.objective.uses_sam:
            self.opt = SAM(self.opt, **self.objective.sam)
        self.lab = BatchStream(len(self.y_all), c.batch_size, self.gen)
        self.unl = BatchStream(len(self.y_all), c.batch_size, self.gen)
        self.step = 0
        self.lr_scale = 1.0  # lowered after each divergence
        self.retries = 0
        self.seconds = 0.0  # training time of the processes this run resumed from
        self.history: list[dict] = []

    def prep(self, x: torch.Tensor) -> torch.Tensor:
        a = self.aug  # train.augment.<dataset>
        x = augment(x, crop_pad=4 if a.crop else 0, flip=a.flip) if a.crop or a.flip else x
        return add_noise(x, self.c.data_noise)

    def next_batch(self) -> Batch:
        i, j = (shard(s.next(), self.world).to(self.device) for s in (self.lab, self.unl))  # this rank's slices
        return Batch(x_lab=self.prep(self.x_all[i]), y=self.y_all[i], x_px=self.prep(self.x_all[j]),
                     x_px_clean=self.x_all[j])

    def state_dict(self) -> dict:
        """The whole run state on the CPU: plain tensors and dicts, loadable with ``weights_only=True``."""
        return {
            "step": self.step, "lr_scale": self.lr_scale, "retries": self.retries, "seconds": self.seconds,
            "history": [dict(r) for r in self.history],
            "model": {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()},
            "optimizer": _to_cpu(self.opt.state_dict()),
            "objective": _to_cpu(self.objective.state_dict()),
            "streams": {"lab": self.lab.state_dict(), "unl": self.unl.state_dict()},
            "rng": {"torch": torch.get_rng_state(), "gen": self.gen.get_state(),
                    "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
                    "numpy": _np_state(), "python": _py_state()},
        }

    def load_state_dict(self, s: dict) -> None:
        self.step, self.lr_scale, self.retries = int(s["step"]), float(s["lr_scale"]), int(s["retries"])
        self.seconds = float(s.get("seconds", 0.0))
        self.history = [dict(r) for r in s["history"]]
        self.model.load_state_dict(s["model"])
        self.opt.load_state_dict(s["optimizer"])
        self.objective.load_state_dict(s["objective"])
        self.objective.to(self.device)
        self.lab.load_state_dict(s["streams"]["lab"])
        self.unl.load_state_dict(s["streams"]["unl"])
        torch.set_rng_state(s["rng"]["torch"])
        self.gen.set_state(s["rng"]["gen"])
        if s["rng"]["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(s["rng"]["cuda"])
        _set_np_state(s["rng"]["numpy"])
        _set_py_state(s["rng"]["python"])


def _to_cpu(obj):
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().clone()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


def _np_state() -> dict:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "cached": float(cached)}


def _set_np_state(s: dict) -> None:
    np.random.set_state((s["name"], s["keys"].numpy().astype(np.uint32), s["pos"], s["has_gauss"], s["cached"]))


def _py_state() -> list:
    version, internal, gauss = random.getstate()
    return [version, list(internal), gauss]


def _set_py_state(s: list) -> None:
    random.setstate((s[0], tuple(s[1]), s[2]))


def train(params: Params, objective_name: str, data: DatasetArrays, device: torch.device, *,
          log_every: int = 10, on_log: Callable[[dict], None] | None = None, progress: bool = True,
          resume: ResumeStore | None = None, checkpoint_every: int = 100,
          fault: Callable[[int, float, dict], tuple[float, dict]] | None = None,
          bf16: bool = False, channels_last: bool = False, world: World = World()) -> TrainResult:
    """Train one objective. Every ``checkpoint_every`` steps and after the last one the whole state is kept in memory
    (the rollback point after a divergence) and, with ``resume``, written atomically to disk: the train
    stage removes it once its outputs are written, so a run killed before that resumes with no step to redo. On divergence
    the run rolls back, re-initialises the sampler, multiplies the lr by ``retry_lr_factor`` and goes
    on; after ``max_retries`` it raises :class:`DivergenceError`. ``fault(step, loss, logs)`` returns
    (loss, logs) as the divergence check sees them: tests inject a NaN or an energy blow-up with it.
    ``bf16`` (autocast) and ``channels_last`` are execution options: flags, not tracked params.
    With several processes (``world``, see ebm/distributed.py) the divergence flag and the logged values
    are all-reduced once per step, so every rank rolls back together and the history holds global means."""
    c = params.train.common
    tr = Trainer(params, objective_name, data, device, channels_last=channels_last, world=world)

    amp = autocast(device, bf16)
    result = TrainResult(tr.model, tr.objective)
    if resume is not None and (saved := resume.load()) is not None:
        try:
            tr.load_state_dict(saved)
            result.resumed_from = tr.step
            resume.log(f"resume: continuing from step {tr.step} ({resume.path})")
        except Exception as e:  # loads, stamp matches, structure does not: a foreign or hand-edited file
            resume.log(f"resume: {resume.path} is unusable ({type(e).__name__}: {e}); starting fresh")
            tr = Trainer(params, objective_name, data, device, channels_last=channels_last, world=world)
            result = TrainResult(tr.model, tr.objective)
    good = tr.state_dict()  # the last good state
    base = tr.seconds  # a resumed run's time counts its earlier processes' (up to their last state)
    t0 = time.perf_counter()
    bar = tqdm(total=c.steps, initial=tr.step, desc=f"train {objective_name}", disable=not progress, mininterval=2)
    while tr.step < c.steps:
        step = tr.step
        for g in tr.opt.param_groups:
            g["lr"] = lr_at(step, c) * tr.lr_scale
        tr.objective.set_step(step)
        loss_t, logs = train_step(tr.net, tr.objective, tr.opt, tr.next_batch(), amp)
        loss, vals = float(loss_t), {k: float(v) for k, v in logs.items()}
        if fault is not None:
            loss, vals = fault(step, loss, vals)
        reason = divergence(loss, vals, c)
        flagged, vals = reduce_step(reason is not None, {"_loss": loss, **vals})
        loss, reason = vals.pop("_loss"), reason or ("divergence on another rank" if flagged else None)
        if reason is not None:
            if tr.retries >= c.max_retries:
                raise DivergenceError(step, {**vals, "loss": loss},
                                      f"{reason}; {tr.retries} retries used (train.common.max_retries)")
            retries, lr_scale = tr.retries + 1, tr.lr_scale * c.retry_lr_factor
            tr.load_state_dict(good)
            tr.retries, tr.lr_scale = retries, lr_scale
            tr.objective.set_step(tr.step)  # the step training resumes from: its sampler's schedule
            sampler = "sampler re-initialised, " if tr.objective.reset_sampler() else ""
            tqdm.write(f"step {step}: {reason}; rolled back to step {tr.step}, {sampler}"
                       f"lr × {lr_scale:g} (retry {retries}/{c.max_retries})")
            bar.n = tr.step
            continue
        tr.step += 1
        bar.update(1)
        if step % log_every == 0 or tr.step == c.steps:
            row = {"step": step, "lr": tr.opt.param_groups[0]["lr"], **vals, "retries": tr.retries,
                   "seconds": base + time.perf_counter() - t0}
            tr.history.append(row)
            bar.set_postfix(loss=f"{row['loss']:.3f}", acc=f"{row['acc']:.2f}")
            if on_log:
                on_log(row)
        if tr.step % checkpoint_every == 0 or tr.step == c.steps:
            tr.seconds = base + time.perf_counter() - t0
            good = tr.state_dict()
            if resume is not None:  # also the last step's: a kill while the outputs are written loses no training
                resume.save(good)
    bar.close()
    result.history, result.retries = tr.history, tr.retries
    result.seconds = base + time.perf_counter() - t0
    return result
