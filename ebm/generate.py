"""Sample generation from a trained model: fresh SGLD chains from U(-1, 1), as in JEM's uncond_samples."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ebm.augment import to_uint8
from ebm.config import GenerateConfig
from ebm.sampling import model_mode, sgld, uniform_init


def generate(model: nn.Module, cfg: GenerateConfig, device: torch.device, *,
             progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """``n_samples`` images (N, 32, 32, 3) uint8 and the model's predicted class for each."""
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    xs, ys = [], []
    for start in tqdm(range(0, cfg.n_samples, cfg.batch_size), desc="generate", disable=not progress):
        n = min(cfg.batch_size, cfg.n_samples - start)
        x0 = uniform_init(n, (3, 32, 32), device, generator=gen)
        with model_mode(model, train=False):
            x = sgld(model, x0, steps=cfg.sgld_steps, lr=cfg.sgld_lr, std=cfg.sgld_std, generator=gen)
            with torch.no_grad():
                ys.append(model(x.clamp(-1, 1)).argmax(1).cpu().numpy())
        xs.append(to_uint8(x))
    return np.concatenate(xs), np.concatenate(ys)


def image_grid(x: np.ndarray, ncol: int = 10, pad: int = 2) -> np.ndarray:
    """Tile (N, H, W, 3) uint8 images into one (rows·(H+pad)+pad, ncol·(W+pad)+pad, 3) image."""
    n, h, w, _ = x.shape
    nrow = max(1, -(-n // ncol))
    grid = np.full((nrow * (h + pad) + pad, ncol * (w + pad) + pad, 3), 255, dtype=np.uint8)
    for i in range(n):
        r, c = divmod(i, ncol)
        grid[pad + r * (h + pad):pad + r * (h + pad) + h, pad + c * (w + pad):pad + c * (w + pad) + w] = x[i]
    return grid
