"""JEM: "Your Classifier is Secretly an Energy Based Model" (Grathwohl et al. 2020, arXiv:1912.03263).

    log p(x, y) = log p(y|x) + log p(x),   p(x) ∝ Σ_y exp f(x)[y]

The log p(x) gradient is the contrastive-divergence estimate with SGLD samples x~ from a persistent
replay buffer; the surrogate loss and the total are

    L_px = -( mean_i LSE f(x+_i) - mean_j LSE f(x~_j) )
    L    = CE(f(x_lab), y) + px_weight · L_px + energy_l2 · (mean LSE f(x+)² + mean LSE f(x~)²)

x+ and (x_lab, y) are two independent batches; the samples are detached (no gradient through SGLD).
``energy_l2`` is the small energy-magnitude penalty suggested for stability (0 = the paper).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ebm.config import JemConfig, TrainCommon
from ebm.models import log_px
from ebm.objectives.base import Batch, Objective
from ebm.sampling import ReplayBuffer, model_mode, sgld, uniform_init


class JEM(Objective):
    name = "jem"

    def __init__(self, cfg: JemConfig, common: TrainCommon, *, n_classes: int, image_shape: tuple[int, ...]):
        self.cfg = cfg
        self.device: torch.device | str = "cpu"
        self.buffer = ReplayBuffer(cfg.buffer_size, image_shape, reinit_freq=cfg.reinit_freq,
                                   init=lambda n: uniform_init(n, image_shape, self.device))

    def to(self, device: torch.device | str) -> "JEM":
        self.device = device
        self.buffer.to(device)
        return self

    def sample(self, model: nn.Module) -> torch.Tensor:
        """Advance ``sample_batch_size`` buffer chains by K SGLD steps (model in eval mode, as JEM)."""
        c = self.cfg
        idx, x0 = self.buffer.sample(c.sample_batch_size)
        with model_mode(model, train=False):
            x = sgld(model, x0, steps=c.sgld_steps, lr=c.sgld_lr, std=c.sgld_std)
        self.buffer.push(idx, x)
        return x

    def px_terms(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """px_weight · L_px (+ the energy penalty), and its scalars; shared with ``hdge_jem``."""
        c = self.cfg
        x_fake = self.sample(model)  # (S, 3, 32, 32), detached
        lp_real = log_px(model(batch.x_px))  # (B',)
        lp_fake = log_px(model(x_fake))  # (S,)
        l_px = -(lp_real.mean() - lp_fake.mean())
        loss = c.px_weight * l_px
        if c.energy_l2 > 0:
            loss = loss + c.energy_l2 * (lp_real.mean() ** 2 + lp_fake.mean() ** 2)
        return loss, {"px": l_px.detach(), "e_data": -lp_real.detach().mean(), "e_sample": -lp_fake.detach().mean()}

    def loss(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        l_px, px_logs = self.px_terms(model, batch)
        logits = model(batch.x_lab)  # (B, C)
        ce = F.cross_entropy(logits, batch.y)
        loss = ce + l_px
        acc = (logits.argmax(1) == batch.y).float().mean()
        return loss, {"loss": loss.detach(), "ce": ce.detach(), "acc": acc, **px_logs}

    def reset_sampler(self) -> None:
        self.buffer.buffer = self.buffer.init(self.buffer.size)

    def state_dict(self) -> dict:
        return {"buffer": self.buffer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.buffer.load_state_dict(state["buffer"])
