"""Sample generation from a trained model, as the papers show samples:

- ``fresh``: unconditional chains from U(-1, 1), SGLD on log p~(x) = LSE_y f(x)[y] (JEM's uncond_samples);
- ``cond``: class-conditional chains from U(-1, 1), SGLD on f(x)[y] (log p~(x, y)), ``n_per_class`` per class;
- ``buffer``: the persistent replay buffer the model was trained with (JEM family only), the images that
  JEM++ and SADA-JEM score for IS/FID; its grid tiles the most confident images per predicted class
  (JEM's cond_samples).

All chains use the ``generate`` params, the same for every objective, so samples are comparable.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ebm.augment import to_uint8
from ebm.config import GenerateConfig
from ebm.sampling import model_mode, sgld, uniform_init


def _chains(model: nn.Module, n: int, cfg: GenerateConfig, device: torch.device, gen: torch.Generator,
            y: torch.Tensor | None, desc: str, progress: bool) -> tuple[np.ndarray, np.ndarray]:
    """``n`` fresh chains in batches; returns uint8 images (n, 32, 32, 3) and the predicted classes."""
    xs, preds = [], []
    for start in tqdm(range(0, n, cfg.batch_size), desc=desc, disable=not progress):
        b = min(cfg.batch_size, n - start)
        x0 = uniform_init(b, (3, 32, 32), device, generator=gen)  # (b, 3, 32, 32)
        yb = None if y is None else y[start:start + b].to(device)
        with model_mode(model, train=False):
            x = sgld(model, x0, steps=cfg.sgld_steps, lr=cfg.sgld_lr, std=cfg.sgld_std, y=yb, generator=gen)
            with torch.no_grad():
                preds.append(model(x.clamp(-1, 1)).argmax(1).cpu().numpy())
        xs.append(to_uint8(x))
    return np.concatenate(xs), np.concatenate(preds)


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
    preds, conf = [], []
    for i in range(0, len(x), batch):
        p = model(x[i:i + batch].to(device).clamp(-1, 1)).softmax(1)  # (b, C)
        conf.append(p.max(1).values.cpu().numpy())
        preds.append(p.argmax(1).cpu().numpy())
    return np.concatenate(preds), np.concatenate(conf)


def generate(model: nn.Module, cfg: GenerateConfig, device: torch.device, *, n_classes: int,
             buffer: torch.Tensor | None = None, progress: bool = True) -> dict[str, np.ndarray]:
    """Arrays for ``samples.npz``: fresh / fresh_pred, cond / cond_y / cond_pred, and, given a replay
    buffer, buffer / buffer_pred / buffer_conf (a seeded choice of ``n_samples`` buffer images)."""
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    model.eval()
    out: dict[str, np.ndarray] = {}
    out["fresh"], out["fresh_pred"] = _chains(model, cfg.n_samples, cfg, device, gen, None, "fresh", progress)
    if cfg.n_per_class > 0:
        y = torch.arange(n_classes).repeat_interleave(cfg.n_per_class)  # (C·n,) class-major order
        out["cond"], out["cond_pred"] = _chains(model, len(y), cfg, device, gen, y, "class-conditional", progress)
        out["cond_y"] = y.numpy()
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
