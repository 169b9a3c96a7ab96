"""Training one hybrid model for one loss weight w: loss = w·NT-Xent(views) + (1 − w)·bits/dim(clean)."""
from __future__ import annotations

import math
import time
from typing import Callable

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ebm import checkpoint
from ebm.augment import to_tensor
from ebm.checkpoint import save_pretrained  # noqa: F401  (re-exported beside load_pretrained)
from ebm.config import PretrainConfig
from ebm.distributed import World, gather_with_grad, rank_seed, reduce_step, shard, wrap
from ebm.pretrain.losses import nt_xent
from ebm.pretrain.model import HybridTransformer
from ebm.pretrain.views import random_view
from ebm.errors import DivergenceError


def build_model(cfg: PretrainConfig) -> HybridTransformer:
    return HybridTransformer(patch_size=cfg.patch_size, dim=cfg.dim, encoder_depth=cfg.encoder_depth,
                             decoder_depth=cfg.decoder_depth, heads=cfg.heads, mixtures=cfg.mixtures)


def lr_at(step: int, cfg: PretrainConfig) -> float:
    """Linear warm-up to ``lr``, then cosine decay to 0 at ``steps``."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    frac = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return 0.5 * cfg.lr * (1 + math.cos(math.pi * frac))


def hybrid_loss(model: HybridTransformer, x: torch.Tensor, weight: float, cfg: PretrainConfig,
                gen: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
    """The weighted loss on a clean batch x (B, 3, 32, 32); a term with weight 0 is not computed."""
    loss = x.new_zeros(())
    logs: dict[str, float] = {}
    if weight < 1:
        bpd = model.bpd(x).mean()
        loss = loss + (1 - weight) * bpd
        logs["bpd"] = bpd.item()
    if weight > 0:
        kw = dict(crop_scale=cfg.crop_scale, color_jitter=cfg.color_jitter, generator=gen)
        v = torch.cat([random_view(x, **kw), random_view(x, **kw)])  # (2B, 3, 32, 32)
        _, feats = model(v)
        z = model.proj(feats)  # (2B, P)
        # several processes: every rank's views are negatives for every anchor, as in one process
        ntx = nt_xent(gather_with_grad(z[:len(x)]), gather_with_grad(z[len(x):]), cfg.temperature)
        loss = loss + weight * ntx
        logs["ntxent"] = ntx.item()
    return loss, logs


class HybridLoss(nn.Module):
    """:func:`hybrid_loss` as a module, so that under DDP each step is one forward through the wrapper."""

    def __init__(self, model: HybridTransformer):
        super().__init__()
        self.model = model

    def forward(self, x, weight, cfg, gen):
        return hybrid_loss(self.model, x, weight, cfg, gen)


def pretrain_one(x_train: np.ndarray, cfg: PretrainConfig, weight: float, device: torch.device, *,
                 progress: bool = True, log: Callable[[dict], None] | None = None,
                 log_every: int = 10, world: World = World()) -> tuple[HybridTransformer, list[dict], float]:
    """Train on uint8 images (N, 32, 32, 3); returns (model in eval mode, history rows, seconds).
    Seeded by ``cfg.seed``: two runs on the CPU give identical weights. A non-finite loss raises
    :class:`DivergenceError` with the step. Several processes (``world``): ``batch_size`` is the global
    batch, each rank takes its slice of the same draw and its own views (seeded from (seed, rank))."""
    torch.manual_seed(cfg.seed)
    model = build_model(cfg).to(device)
    gen = torch.Generator(device=device).manual_seed(rank_seed(cfg.seed, world.rank))
    pick = torch.Generator().manual_seed(cfg.seed + 1)  # the same global batch on every rank
    net = wrap(HybridLoss(model), world, device, find_unused_parameters=True)  # weight 0 or 1 leaves a head unused
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    history, t0 = [], time.perf_counter()
    for step in tqdm(range(cfg.steps), desc=f"pretrain w={weight:g}", disable=not progress):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, cfg)
        idx = shard(torch.randint(0, len(x_train), (cfg.batch_size,), generator=pick), world).numpy()
        x = to_tensor(x_train[idx]).to(device)  # (B / world, 3, 32, 32)
        loss, logs = net(x, weight, cfg, gen)
        bad, vals = reduce_step(not math.isfinite(loss.item()), {"loss": loss.item(), **logs})  # means over ranks
        if bad:
            raise DivergenceError(step, vals, "non-finite pretraining loss")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % log_every == 0 or step == cfg.steps - 1:
            row = {"weight": weight, "step": step, "loss": vals["loss"], "ntxent": vals.get("ntxent", float("nan")),
                   "bpd": vals.get("bpd", float("nan")), "lr": opt.param_groups[0]["lr"]}
            history.append(row)
            if log is not None:
                log(row)
    return model.eval(), history, time.perf_counter() - t0



def load_pretrained(path, device: torch.device | str = "cpu") -> tuple[HybridTransformer, dict]:
    return checkpoint.load_pretrained(path, build_model, device)
