"""JEM: "Your Classifier is Secretly an Energy Based Model" (Grathwohl et al. 2020, arXiv:1912.03263).

    log p(x, y) = log p(y|x) + log p(x),   p(x) ∝ Σ_y exp f(x)[y]

The log p(x) gradient is the contrastive-divergence estimate with SGLD samples x~ from a persistent
replay buffer; the surrogate loss and the total are

    L_px  = -( mean_i LSE f(x+_i) - mean_j LSE f(x~_j) )
    L_pxy = -( mean_i f(x_lab,i)[y_i] - mean_i f(x~_i | y_i)[y_i] )     (optional)
    L     = CE(f(x_lab), y) + px_weight · L_px + pxy_weight · L_pxy
            + energy_l2 · (mean LSE f(x+)² + mean LSE f(x~)²)

x+ and (x_lab, y) are two independent batches; the samples are detached (no gradient through SGLD).
The p(x|y) chains x~_i | y_i run SGLD on f(x)[y_i] for the labelled batch's own labels y_i, each drawn
from its class's partition of the replay buffer, as in the JEM code.
``energy_l2`` is the small energy-magnitude penalty suggested for stability (0 = the paper).
``px_start`` / ``px_ramp`` / ``px_until`` schedule the p(x) branch (its term and penalty), each a fraction of
the run's ``steps``: off before step ``round(px_start · steps)`` (nothing is sampled, so those steps cost what
a classifier step costs), then its weight rises linearly to ``px_weight`` over ``round(px_ramp · steps)``
steps (both 0 = the paper: the full weight from the first step), and it is off again from step
``round(px_until · steps)`` to the end (1 = the paper: on to the end).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ebm.config import HdgeJemConfig, JemConfig, JemppConfig, SadaJemConfig, TrainCommon
from ebm.models import log_px
from ebm.objectives.base import Batch, Objective
from ebm.informative_init import ClassGaussians
from ebm.sampling import ChainSampler, ReplayBuffer, uniform_init


# the sections JEM's p(x) term and sampler are built from: each has px_weight, the sgld_* keys, buffer_size,
# reinit_freq, sample_batch_size, energy_l2 (sample_mode, init, init_jitter where present). JEM.terms also
# reads pxy_weight; hdge_jem uses only JEM.px_terms and sample.
PxSection = JemConfig | JemppConfig | SadaJemConfig | HdgeJemConfig


class JEM(Objective):
    """JEM as the paper's code runs it: U(-1, 1) init, plain SGLD, model in eval() while sampling.
    Subclasses change the sampler through the class attributes below and their config.

    With ``px_weight`` = ``pxy_weight`` = 0 the objective is exactly ``softmax``: no replay buffer is built
    (no random numbers drawn for it), nothing is sampled and ``energy_l2`` (a penalty on the p(x) branch's
    energies) has nothing to act on."""

    name = "jem"
    trains_sampler = True
    grad_clip = 0.0  # per-pixel gradient clip in SGLD (0 = off)
    clamp = False  # project samples onto [-1, 1] after each step

    def __init__(self, cfg: PxSection, common: TrainCommon, *, n_classes: int, image_shape: tuple[int, ...],
                 data: tuple[torch.Tensor, torch.Tensor] | None = None):
        self.cfg = cfg
        self.device: torch.device | str = "cpu"
        # JEM's own config has neither key: uniform init, eval() while sampling (the JEM code)
        self.sample_in_train_mode = getattr(cfg, "sample_mode", "eval") == "train"
        self.gaussians: ClassGaussians | None = None
        self.buffer: ReplayBuffer | None = None
        # first step with the p(x) branch, steps of its ramp, first step without it again
        self.px_on_at, self.px_ramp_steps, self.px_off_at = cfg.px_steps(common.steps)
        self.set_step(0)  # sets px_scale, the p(x) schedule's factor at the current step
        if not self.generative:
            return
        if getattr(cfg, "init", "uniform") == "informative":
            if data is None:
                raise ValueError(f"{self.name}: informative init needs the training images")
            self.gaussians = ClassGaussians.fit(data[0].cpu(), data[1].cpu(), n_classes, jitter=cfg.init_jitter)
        if self.pxy_weight > 0 and cfg.buffer_size < n_classes:
            raise ValueError(f"{self.name}: buffer_size {cfg.buffer_size} < {n_classes} classes: the p(x|y) term "
                             "needs a buffer partition per class")
        # p(x|y) chains live in class partitions of the buffer, as in the JEM code
        self.buffer = ReplayBuffer(cfg.buffer_size, image_shape, reinit_freq=cfg.reinit_freq,
                                   init=self.init_fn(image_shape), n_classes=n_classes if self.pxy_weight > 0 else 1)

    @property
    def pxy_weight(self) -> float:
        return getattr(self.cfg, "pxy_weight", 0.0)

    def set_step(self, step: int) -> None:
        self.step = step
        if step < self.px_on_at or step >= self.px_off_at:
            self.px_scale = 0.0
        else:
            ramp = self.px_ramp_steps
            self.px_scale = min(1.0, (step - self.px_on_at + 1) / ramp) if ramp > 0 else 1.0

    @property
    def px_active(self) -> bool:
        """Whether this step has a p(x) term (px_weight > 0 and the schedule has started)."""
        return self.cfg.px_weight > 0 and self.px_scale > 0

    @property
    def generative(self) -> bool:
        """Whether any maximum-likelihood term is on (and so a sampler is needed)."""
        return self.cfg.px_weight > 0 or self.pxy_weight > 0

    def init_fn(self, image_shape: tuple[int, ...]):
        """The chains' initial distribution: ``f(n, classes=None)`` → (n, *image_shape) on ``self.device``."""
        if self.gaussians is not None:
            return lambda n, classes=None: self.gaussians.sample(n, classes).to(self.device)
        return lambda n, classes=None: uniform_init(n, image_shape, self.device)

    def sampler(self, image_shape: tuple[int, ...] = (3, 32, 32)) -> ChainSampler:
        """This objective's sampler (init and step rule), shared by training and the generate stage."""
        c = self.cfg
        init = "class-Gaussian init" if self.gaussians is not None else "U(-1, 1) init"
        clip = f", grad clip ±{self.grad_clip:g}" if self.grad_clip > 0 else ""
        box = ", projected to [-1, 1]" if self.clamp else ""
        name = f"{self.name} sampler: SGLD lr {c.sgld_lr:g}, noise {c.sgld_std:g}{clip}{box}, {init}"
        return ChainSampler(self.init_fn(image_shape), lr=c.sgld_lr, std=c.sgld_std, grad_clip=self.grad_clip,
                            clamp=self.clamp, train_mode=self.sample_in_train_mode, name=name)

    def run_chains(self, model: nn.Module, x0: torch.Tensor, *, y: torch.Tensor | None = None) -> torch.Tensor:
        """K (``sgld_steps``) steps of this objective's sampler from ``x0``, on log p~(x) or on f(x)[y]."""
        return self.sampler(tuple(x0.shape[1:])).run(model, x0, steps=self.cfg.sgld_steps, y=y)

    def to(self, device: torch.device | str) -> "JEM":
        self.device = device
        if self.gaussians is not None:
            self.gaussians.to(device)
        if self.buffer is not None:
            self.buffer.to(device)
        return self

    def sample(self, model: nn.Module, y: torch.Tensor | None = None) -> torch.Tensor:
        """Advance buffer chains by K steps and write them back: ``sample_batch_size`` unconditional
        chains, or, given labels ``y`` (n,), one chain per label from its class partition, run on f(x)[y]."""
        n = self.cfg.sample_batch_size if y is None else len(y)
        idx, x0 = self.buffer.sample(n, classes=y)
        x = self.run_chains(model, x0, y=y)
        self.buffer.push(idx, x)
        return x

    def px_input(self, batch: Batch) -> torch.Tensor:
        """The data images of the maximum-likelihood branch (JEM: augmented and noised, like x_lab)."""
        return batch.x_px

    def px_terms(self, model: nn.Module, batch: Batch, x_fake: torch.Tensor | None = None
                 ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """px_weight · L_px (+ the energy penalty), and its scalars; shared with ``hdge_jem``.
        ``x_fake`` reuses samples already drawn (SAM's second pass) instead of sampling again."""
        c = self.cfg
        if x_fake is None:
            x_fake = self.sample(model)  # (S, 3, 32, 32), detached
        lp_real = log_px(model(self.px_input(batch)))  # (B',)
        lp_fake = log_px(model(x_fake))  # (S,)
        l_px = -(lp_real.mean() - lp_fake.mean())
        loss = c.px_weight * self.px_scale * l_px
        if c.energy_l2 > 0:
            loss = loss + c.energy_l2 * self.px_scale * (lp_real.mean() ** 2 + lp_fake.mean() ** 2)
        return loss, {"px": l_px.detach(), "e_data": -lp_real.detach().mean(), "e_sample": -lp_fake.detach().mean()}

    def pxy_term(self, model: nn.Module, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """L_pxy: chains of the labelled batch's own classes ``y``, from their class partitions (JEM code)."""
        x_fake = self.sample(model, y=y)  # (B, 3, 32, 32)
        f_fake = model(x_fake).gather(1, y[:, None]).squeeze(1)  # (B,)
        f_real = logits.gather(1, y[:, None]).squeeze(1)  # (B,)
        return -(f_real.mean() - f_fake.mean())

    def terms(self, model: nn.Module, batch: Batch, x_fake: torch.Tensor | None = None
              ) -> tuple[torch.Tensor, torch.Tensor | None, dict[str, torch.Tensor]]:
        """CE, and the rest: the p(x) terms (when ``px_weight`` > 0 and scheduled) + the p(x|y) term
        (``pxy_weight`` > 0), or None. ``x_fake`` as in :meth:`px_terms`."""
        logs: dict[str, torch.Tensor] = {}
        rest = None
        if self.px_active:
            rest, logs = self.px_terms(model, batch, x_fake=x_fake)
        logits = model(batch.x_lab)  # (B, C)
        ce = F.cross_entropy(logits, batch.y)
        if rest is None:
            logs["e_data"] = -torch.logsumexp(logits.detach(), 1).mean()
        if self.pxy_weight > 0:
            l_pxy = self.pxy_term(model, logits, batch.y)
            rest = self.pxy_weight * l_pxy if rest is None else rest + self.pxy_weight * l_pxy
            logs["pxy"] = l_pxy.detach()
        acc = (logits.argmax(1) == batch.y).float().mean()
        return ce, rest, {"ce": ce.detach(), "acc": acc, **logs}

    def reset_sampler(self) -> bool:
        # past px_until nothing samples p(x) again: a fresh buffer would stay noise, and the checkpoint and the
        # generate stage's buffer samples would get noise instead of the chains trained so far (p(x|y) chains
        # run to the end, so they are reset as before)
        if self.buffer is not None and (self.step < self.px_off_at or self.pxy_weight > 0):
            self.buffer.reset()
            return True
        return False

    def state_dict(self) -> dict:
        return {} if self.buffer is None else {"buffer": self.buffer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        if self.buffer is None:
            super().load_state_dict(state)
        else:
            self.buffer.load_state_dict(state["buffer"])
