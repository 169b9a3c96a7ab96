"""HDGE: "Hybrid Discriminative-Generative Training via Contrastive Learning" (Liu & Abbeel 2020,
arXiv:2007.09070).

    L = w_ce · CE(f(x), y)  +  w_c · L_c,
    L_c = -log( exp(s⁺/τ) / (exp(s⁺/τ) + Σ_k exp(s⁻_k/τ)) )

log q(x|y) = f(x)[y] - log Z(y) with Z(y) = Σ_x exp f(x)[y] is approximated by contrasting the
query's class-y logit against the class-y logits of K stored negatives. With ẑ = z / ‖z‖₂ (the logits
L2-normalised over classes; or softmax-normalised) and q̂_k a stored negative normalised the same way:

    positive = "compressed" (paper Alg. 1 and the authors' code): s⁺ = log(e^{ẑ_y} + C − 1),
                                                                  s⁻_k = log(e^{q̂_{k,y}} + C − 1)
             = "direct" (the formula as stated):                  s⁺ = ẑ_y,  s⁻_k = q̂_{k,y}

The negatives sit in a first-in-first-out memory of past raw logits (:class:`LogitQueue`, the MoCo
enqueue/dequeue pattern, no gradient, initialised N(0, 1) as in the code). ``hdge_jem`` adds JEM's
SGLD maximum-likelihood term of log p(x) (see ``ebm/objectives/jem.py``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ebm.config import HdgeConfig, HdgeJemConfig, TrainCommon
from ebm.distributed import gather_cat
from ebm.objectives.base import Batch, Objective
from ebm.objectives.jem import JEM
from ebm.sampling import ChainSampler


class LogitQueue:
    """FIFO memory of ``size`` logit vectors (C each), stored detached; oldest entries are overwritten."""

    def __init__(self, size: int, n_classes: int, generator: torch.Generator | None = None):
        self.size = size
        self.data = torch.randn(size, n_classes, generator=generator)  # (K, C)
        self.ptr = 0

    def push(self, logits: torch.Tensor) -> None:
        z = logits.detach().to(self.data.device, self.data.dtype)  # (B, C)
        if len(z) >= self.size:  # a batch larger than the memory: keep its newest entries
            z = z[-self.size:]
        idx = (self.ptr + torch.arange(len(z), device=self.data.device)) % self.size  # wraps around
        self.data[idx] = z
        self.ptr = int((self.ptr + len(z)) % self.size)

    def to(self, device: torch.device | str) -> "LogitQueue":
        self.data = self.data.to(device)
        return self

    def state_dict(self) -> dict:
        return {"data": self.data.detach().cpu(), "ptr": self.ptr}

    def load_state_dict(self, state: dict) -> None:
        if tuple(state["data"].shape) != tuple(self.data.shape):
            raise ValueError(f"queue shape {tuple(state['data'].shape)} != {tuple(self.data.shape)}")
        self.data = state["data"].to(self.data.device)
        self.ptr = int(state["ptr"])


def normalise(z: torch.Tensor, how: str) -> torch.Tensor:
    """(N, C) logits → normalised over classes."""
    if how == "l2":
        return F.normalize(z, dim=1)
    if how == "softmax":
        return z.softmax(1)
    raise ValueError(f"unknown normalisation {how!r}")


def contrastive_loss(z: torch.Tensor, y: torch.Tensor, negatives: torch.Tensor, *, temperature: float,
                     normalisation: str = "l2", positive: str = "compressed") -> torch.Tensor:
    """HDGE's L_c for queries z (B, C) with labels y (B,) against stored negatives (K, C)."""
    n_classes = z.shape[1]
    zq = normalise(z, normalisation)  # (B, C)
    qn = normalise(negatives, normalisation)  # (K, C)
    s_pos = zq.gather(1, y[:, None])  # (B, 1)
    s_neg = qn[:, y].t()  # (B, K): negative k's class-y_i entry
    if positive == "compressed":
        extra = torch.log(torch.tensor(float(n_classes - 1), device=z.device))
        s_pos, s_neg = torch.logaddexp(s_pos, extra), torch.logaddexp(s_neg, extra)
    elif positive != "direct":
        raise ValueError(f"unknown positive form {positive!r}")
    logits = torch.cat([s_pos, s_neg], dim=1) / temperature  # (B, 1 + K)
    return F.cross_entropy(logits, torch.zeros(len(z), dtype=torch.long, device=z.device))


class HDGE(Objective):
    name = "hdge"

    def __init__(self, cfg: HdgeConfig | HdgeJemConfig, common: TrainCommon, *, n_classes: int,
                 image_shape: tuple[int, ...], data: tuple[torch.Tensor, torch.Tensor] | None = None):
        self.cfg = cfg
        self.queue = LogitQueue(cfg.queue_size, n_classes, torch.Generator().manual_seed(common.seed))

    def to(self, device: torch.device | str) -> "HDGE":
        self.queue.to(device)
        return self

    def terms(self, model: nn.Module, batch: Batch
              ) -> tuple[torch.Tensor, torch.Tensor | None, dict[str, torch.Tensor]]:
        """w_ce · CE, and the rest: w_c · L_c."""
        c = self.cfg
        logits = model(batch.x_lab)  # (B, C)
        ce = F.cross_entropy(logits, batch.y)
        lc = contrastive_loss(logits, batch.y, self.queue.data, temperature=c.temperature,
                              normalisation=c.normalisation, positive=c.positive)
        # after the loss, so the batch is not its own negative; all ranks' logits, as MoCo enqueues its keys
        self.queue.push(gather_cat(logits.detach()))
        acc = (logits.argmax(1) == batch.y).float().mean()
        return c.ce_weight * ce, c.contrast_weight * lc, {
            "ce": ce.detach(), "contrast": lc.detach(), "acc": acc, "e_data": -torch.logsumexp(logits.detach(), 1).mean()}

    def state_dict(self) -> dict:
        return {"queue": self.queue.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.queue.load_state_dict(state["queue"])


class HDGEJEM(HDGE):
    """HDGE + px_weight · L_px, with L_px and its sampler exactly as in :class:`~ebm.objectives.jem.JEM`."""

    name = "hdge_jem"
    trains_sampler = True

    def __init__(self, cfg: HdgeJemConfig, common: TrainCommon, *, n_classes: int, image_shape: tuple[int, ...],
                 data: tuple[torch.Tensor, torch.Tensor] | None = None):
        super().__init__(cfg, common, n_classes=n_classes, image_shape=image_shape)
        self.jem = JEM(cfg, common, n_classes=n_classes, image_shape=image_shape, data=data)  # p(x) term, sampler

    def to(self, device: torch.device | str) -> "HDGEJEM":
        super().to(device)
        self.jem.to(device)
        return self

    def terms(self, model: nn.Module, batch: Batch
              ) -> tuple[torch.Tensor, torch.Tensor | None, dict[str, torch.Tensor]]:
        """HDGE's terms, with L_px (and its penalty) in the rest."""
        l_px, px_logs = self.jem.px_terms(model, batch) if self.jem.px_active else (None, {})
        ce, rest, logs = super().terms(model, batch)
        if l_px is not None:  # px_weight = 0: exactly hdge, nothing sampled
            rest = rest + l_px
        return ce, rest, {**logs, **px_logs}

    def sampler(self, image_shape: tuple[int, ...] = (3, 32, 32)) -> ChainSampler:
        return self.jem.sampler(image_shape)

    def set_step(self, step: int) -> None:
        self.jem.set_step(step)

    def reset_sampler(self) -> bool:
        return self.jem.reset_sampler()

    def state_dict(self) -> dict:
        return {**super().state_dict(), "jem": self.jem.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.jem.load_state_dict(state["jem"])
