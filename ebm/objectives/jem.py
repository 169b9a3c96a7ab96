"""JEM: "Your Classifier is Secretly an Energy Based Model" (Grathwohl et al. 2020, arXiv:1912.03263).

    log p(x, y) = log p(y|x) + log p(x),   p(x) ∝ Σ_y exp f(x)[y]

The log p(x) gradient is the contrastive-divergence estimate with SGLD samples x~ from a persistent
replay buffer; the surrogate loss and the total are

    L_px  = -( mean_i LSE f(x+_i) - mean_j LSE f(x~_j) )
    L_pxy = -( mean_i f(x_lab,i)[y_i] - mean_j f(x~_j | y_j)[y_j] )     (optional, class-conditional chains)
    L     = CE(f(x_lab), y) + px_weight · L_px + pxy_weight · L_pxy
            + energy_l2 · (mean LSE f(x+)² + mean LSE f(x~)²)

x+ and (x_lab, y) are two independent batches; the samples are detached (no gradient through SGLD).
``energy_l2`` is the small energy-magnitude penalty suggested for stability (0 = the paper).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ebm.config import TrainCommon
from ebm.models import log_px
from ebm.objectives.base import Batch, Objective
from ebm.informative_init import ClassGaussians
from ebm.sampling import ReplayBuffer, model_mode, sgld, uniform_init


class JEM(Objective):
    """JEM as the paper's code runs it: U(-1, 1) init, plain SGLD, model in eval() while sampling.
    Subclasses change the sampler through the class attributes below and their config."""

    name = "jem"
    grad_clip = 0.0  # per-pixel gradient clip in SGLD (0 = off)
    clamp = False  # project samples onto [-1, 1] after each step

    def __init__(self, cfg, common: TrainCommon, *, n_classes: int, image_shape: tuple[int, ...],
                 data: tuple[torch.Tensor, torch.Tensor] | None = None):
        self.cfg = cfg
        self.device: torch.device | str = "cpu"
        # JEM's own config has neither key: uniform init, eval() while sampling (the JEM code)
        self.sample_in_train_mode = getattr(cfg, "sample_mode", "eval") == "train"
        self.gaussians: ClassGaussians | None = None
        if getattr(cfg, "init", "uniform") == "informative":
            if data is None:
                raise ValueError(f"{self.name}: informative init needs the training images")
            self.gaussians = ClassGaussians.fit(data[0].cpu(), data[1].cpu(), n_classes, jitter=cfg.init_jitter)
        self.buffer = ReplayBuffer(cfg.buffer_size, image_shape, reinit_freq=cfg.reinit_freq, init=self._init(image_shape))

    def _init(self, image_shape: tuple[int, ...]):
        if self.gaussians is not None:
            return lambda n: self.gaussians.sample(n).to(self.device)
        return lambda n: uniform_init(n, image_shape, self.device)

    def to(self, device: torch.device | str) -> "JEM":
        self.device = device
        if self.gaussians is not None:
            self.gaussians.to(device)
        self.buffer.to(device)
        return self

    def sample(self, model: nn.Module) -> torch.Tensor:
        """Advance ``sample_batch_size`` buffer chains by K SGLD steps and write them back."""
        c = self.cfg
        idx, x0 = self.buffer.sample(c.sample_batch_size)
        with model_mode(model, train=self.sample_in_train_mode):
            x = sgld(model, x0, steps=c.sgld_steps, lr=c.sgld_lr, std=c.sgld_std, grad_clip=self.grad_clip,
                     clamp=self.clamp)
        self.buffer.push(idx, x)
        return x

    def px_input(self, batch: Batch) -> torch.Tensor:
        """The data images of the maximum-likelihood branch (JEM: augmented and noised, like x_lab)."""
        return batch.x_px

    def px_terms(self, model: nn.Module, batch: Batch, x_fake: torch.Tensor | None = None,
                 energy_l2: float | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """px_weight · L_px (+ the energy penalty), and its scalars; shared with ``hdge_jem``.
        ``x_fake`` reuses samples already drawn (SAM's second pass) instead of sampling again;
        ``energy_l2`` overrides the configured penalty weight."""
        c = self.cfg
        energy_l2 = c.energy_l2 if energy_l2 is None else energy_l2
        if x_fake is None:
            x_fake = self.sample(model)  # (S, 3, 32, 32), detached
        lp_real = log_px(model(self.px_input(batch)))  # (B',)
        lp_fake = log_px(model(x_fake))  # (S,)
        l_px = -(lp_real.mean() - lp_fake.mean())
        loss = c.px_weight * l_px
        if energy_l2 > 0:
            loss = loss + energy_l2 * (lp_real.mean() ** 2 + lp_fake.mean() ** 2)
        return loss, {"px": l_px.detach(), "e_data": -lp_real.detach().mean(), "e_sample": -lp_fake.detach().mean()}

    def pxy_term(self, model: nn.Module, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """L_pxy with chains drawn from the buffer and run by class-conditional SGLD on f(x)[y~]."""
        c = self.cfg
        idx, x0 = self.buffer.sample(c.sample_batch_size)
        y_fake = torch.randint(0, logits.shape[1], (len(x0),), device=x0.device)  # (S,)
        with model_mode(model, train=self.sample_in_train_mode):
            x = sgld(model, x0, steps=c.sgld_steps, lr=c.sgld_lr, std=c.sgld_std, y=y_fake,
                     grad_clip=self.grad_clip, clamp=self.clamp)
        self.buffer.push(idx, x)
        f_fake = model(x).gather(1, y_fake[:, None]).squeeze(1)  # (S,)
        f_real = logits.gather(1, y[:, None]).squeeze(1)  # (B,)
        return -(f_real.mean() - f_fake.mean())

    def loss(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        l_px, px_logs = self.px_terms(model, batch)
        logits = model(batch.x_lab)  # (B, C)
        ce = F.cross_entropy(logits, batch.y)
        loss = ce + l_px
        extra = {}
        if self.cfg.pxy_weight > 0:
            l_pxy = self.pxy_term(model, logits, batch.y)
            loss = loss + self.cfg.pxy_weight * l_pxy
            extra["pxy"] = l_pxy.detach()
        acc = (logits.argmax(1) == batch.y).float().mean()
        return loss, {"loss": loss.detach(), "ce": ce.detach(), "acc": acc, **px_logs, **extra}

    def reset_sampler(self) -> None:
        self.buffer.buffer = self.buffer.init(self.buffer.size)

    def state_dict(self) -> dict:
        return {"buffer": self.buffer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.buffer.load_state_dict(state["buffer"])
