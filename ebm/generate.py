"""Sample generation from a trained model, as the papers show samples, with the model's own sampler
(:class:`~ebm.sampling.ChainSampler`: JEM's SGLD from U(-1, 1); JEM++/SADA-JEM's clipped, projected steps
from the class Gaussians; softmax and hdge, which train none, JEM's SGLD with the ``generate`` step size):

- ``fresh``: unconditional samples on log p~(x) = LSE_y f(x)[y], either ``n_samples`` chains of
  ``sgld_steps`` steps from the init, or (``mode: persistent``) JEM's uncond_samples recipe: a buffer of
  ``n_samples`` chains, ``calls`` calls each advancing ``batch_size`` chains drawn from it by
  ``sgld_steps`` steps, with re-initialisation at ``reinit_freq``;
- ``cond``: class-conditional chains on f(x)[y] (log p~(x, y)), ``n_per_class`` per class;
- ``buffer``: the persistent replay buffer the model was trained with (JEM family only), the images that
  JEM++ and SADA-JEM score for IS/FID; its grid tiles the most confident images per predicted class
  (JEM's cond_samples).
"""
from __future__ import annotations

from types import SimpleNamespace
import typing

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ebm.augment import to_uint8
from ebm.config import GenerateConfig, TrainConfig, from_dict
from ebm.sampling import ChainSampler, ReplayBuffer, uniform_init

SHAPE = (3, 32, 32)


def objective_sampler(objective: str, train_cfg: dict, cfg: GenerateConfig, device: torch.device, *,
                      n_classes: int, data: tuple[torch.Tensor, torch.Tensor] | None = None) -> ChainSampler:
    """The sampler ``objective`` trained with (its ``train.<objective>`` section, as saved in the
    checkpoint); ``data`` (training images in [-1, 1], labels) fits JEM++'s informative init."""
    from ebm.objectives import REGISTRY

    common = SimpleNamespace(seed=0, steps=0)  # the sampler reads neither (data order, p(x) schedule)
    obj = REGISTRY[objective](from_dict(typing.get_type_hints(TrainConfig)[objective], train_cfg),
                              common, n_classes=n_classes, image_shape=SHAPE, data=data).to(device)
    if obj.trains_sampler:
        return obj.sampler(SHAPE)
    return ChainSampler(lambda n, classes=None: uniform_init(n, SHAPE, device), lr=cfg.sgld_lr, std=cfg.sgld_std,
                        name=f"JEM SGLD (lr {cfg.sgld_lr:g}, noise {cfg.sgld_std:g}, U(-1, 1) init): "
                             f"{objective} trains no sampler")


def _chains(model: nn.Module, n: int, cfg: GenerateConfig, sampler: ChainSampler, gen: torch.Generator,
            y: torch.Tensor | None, desc: str, progress: bool) -> torch.Tensor:
    """``n`` fresh chains in batches, (n, 3, 32, 32) in the model's input space."""
    xs = []
    for start in tqdm(range(0, n, cfg.batch_size), desc=desc, disable=not progress):
        b = min(cfg.batch_size, n - start)
        yb = None if y is None else y[start:start + b].to(gen.device)
        x0 = sampler.init(b) if yb is None else sampler.init(b, yb)  # (b, 3, 32, 32)
        xs.append(sampler.run(model, x0, steps=cfg.sgld_steps, y=yb, generator=gen))
    return torch.cat(xs)


def persistent_chains(model: nn.Module, cfg: GenerateConfig, sampler: ChainSampler, gen: torch.Generator,
                      progress: bool) -> torch.Tensor:
    """JEM's evaluation buffer: ``n_samples`` chains, ``calls`` calls of ``sgld_steps`` steps on
    ``batch_size`` chains drawn (with replacement) from it; returns the whole buffer."""
    buf = ReplayBuffer(cfg.n_samples, SHAPE, reinit_freq=cfg.reinit_freq, init=sampler.init)
    for _ in tqdm(range(cfg.calls), desc="persistent buffer", disable=not progress, mininterval=2):
        idx, x0 = buf.sample(min(cfg.batch_size, cfg.n_samples))
        buf.push(idx, sampler.run(model, x0, steps=cfg.sgld_steps, generator=gen))
    return buf.buffer


def find_buffer(state: dict) -> torch.Tensor | None:
    """The replay buffer (N, 3, H, W) inside an objective's saved state, wherever the objective nests it
    (JEM: {"buffer": {"buffer": t}}, HDGE+JEM: {"jem": {...}}); None for objectives without one."""
    for k, v in state.items():
        if k == "buffer" and isinstance(v, torch.Tensor) and v.dim() == 4:
            return v
        if isinstance(v, dict) and (found := find_buffer(v)) is not None:
            return found
    return None


@torch.no_grad()
def _predict(model: nn.Module, x: torch.Tensor, device: torch.device, batch: int) -> tuple[np.ndarray, np.ndarray]:
    """Predicted class and max softmax of images clamped to [-1, 1] (as saved), in eval mode."""
    model.eval()
    preds, conf = [], []
    for i in range(0, len(x), batch):
        p = model(x[i:i + batch].to(device).clamp(-1, 1)).softmax(1)  # (b, C)
        conf.append(p.max(1).values.cpu().numpy())
        preds.append(p.argmax(1).cpu().numpy())
    return np.concatenate(preds), np.concatenate(conf)


def generate(model: nn.Module, cfg: GenerateConfig, device: torch.device, *, n_classes: int,
             sampler: ChainSampler, buffer: torch.Tensor | None = None, progress: bool = True) -> dict[str, np.ndarray]:
    """Arrays for ``samples.npz``: fresh / fresh_pred, cond / cond_y / cond_pred, and, given a replay
    buffer, buffer / buffer_pred / buffer_conf (a seeded choice of ``n_samples`` buffer images)."""
    torch.manual_seed(cfg.seed)  # the inits
    gen = torch.Generator(device=device).manual_seed(cfg.seed)  # the Langevin noise
    model.eval()
    out: dict[str, np.ndarray] = {}
    if cfg.mode == "persistent":
        x = persistent_chains(model, cfg, sampler, gen, progress)
    else:
        x = _chains(model, cfg.n_samples, cfg, sampler, gen, None, "fresh", progress)
    out["fresh_pred"], _ = _predict(model, x, device, cfg.batch_size)
    out["fresh"] = to_uint8(x)
    if cfg.n_per_class > 0:
        y = torch.arange(n_classes).repeat_interleave(cfg.n_per_class)  # (C·n,) class-major order
        xc = _chains(model, len(y), cfg, sampler, gen, y, "class-conditional", progress)
        out["cond_pred"], _ = _predict(model, xc, device, cfg.batch_size)
        out["cond"], out["cond_y"] = to_uint8(xc), y.numpy()
    if buffer is not None:
        pick = torch.randperm(len(buffer), generator=torch.Generator().manual_seed(cfg.seed))[:cfg.n_samples]
        xb = buffer[pick.sort().values].float()  # (n, 3, 32, 32)
        out["buffer_pred"], out["buffer_conf"] = _predict(model, xb, device, cfg.batch_size)
        out["buffer"] = to_uint8(xb)
    return out


def class_rows(x: np.ndarray, label: np.ndarray, n_classes: int, per_row: int,
               score: np.ndarray | None = None) -> np.ndarray:
    """Arrange images in rows by class (the highest ``score`` first when given); missing cells stay blank
    (white). Returns (n_classes·per_row, H, W, 3) for :func:`image_grid` with ``ncol=per_row``."""
    _, h, w, c = x.shape
    out = np.full((n_classes * per_row, h, w, c), 255, dtype=np.uint8)
    for k in range(n_classes):
        idx = np.flatnonzero(label == k)
        if score is not None:
            idx = idx[np.argsort(-score[idx], kind="stable")]
        idx = idx[:per_row]
        out[k * per_row:k * per_row + len(idx)] = x[idx]
    return out


def image_grid(x: np.ndarray, ncol: int = 10, pad: int = 2) -> np.ndarray:
    """Tile (N, H, W, 3) uint8 images into one (rows·(H+pad)+pad, ncol·(W+pad)+pad, 3) image."""
    n, h, w, _ = x.shape
    nrow = max(1, -(-n // ncol))
    grid = np.full((nrow * (h + pad) + pad, ncol * (w + pad) + pad, 3), 255, dtype=np.uint8)
    for i in range(n):
        r, c = divmod(i, ncol)
        grid[pad + r * (h + pad):pad + r * (h + pad) + h, pad + c * (w + pad):pad + c * (w + pad) + w] = x[i]
    return grid


def grids(samples: dict[str, np.ndarray], n_classes: int, per_row: int = 10) -> dict[str, np.ndarray]:
    """The grid images of one model: ``fresh`` (first 100), ``cond`` (a row per class) and ``buffer``
    (a row per predicted class, most confident first), each (H, W, 3) uint8."""
    out = {"fresh": image_grid(samples["fresh"][:100], ncol=per_row)}
    if "cond" in samples:
        k = min(per_row, int(np.bincount(samples["cond_y"]).max()))
        out["cond"] = image_grid(class_rows(samples["cond"], samples["cond_y"], n_classes, k), ncol=k)
    if "buffer" in samples:
        rows = class_rows(samples["buffer"], samples["buffer_pred"], n_classes, per_row, samples["buffer_conf"])
        out["buffer"] = image_grid(rows, ncol=per_row)
    return out
