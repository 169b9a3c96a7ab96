"""Image tensors: uint8 arrays → [-1, 1] floats, and batch augmentation done on the device."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def to_tensor(x: np.ndarray) -> torch.Tensor:
    """(N, 32, 32, 3) uint8 → (N, 3, 32, 32) float in [-1, 1] (Normalize(0.5, 0.5) as in the papers)."""
    return torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """(N, 3, H, W) in [-1, 1] → (N, H, W, 3) uint8, clamped (clamping happens only when saving images)."""
    return ((x.detach().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def augment(x: torch.Tensor, *, crop_pad: int = 4, flip: bool = True,
            generator: torch.Generator | None = None) -> torch.Tensor:
    """Reflect-pad ``crop_pad`` → random crop back to size → random horizontal flip; per image."""
    b, _, h, w = x.shape
    dev = x.device
    padded = F.pad(x, (crop_pad,) * 4, mode="reflect")  # (B, 3, H+2p, W+2p)
    ox = torch.randint(0, 2 * crop_pad + 1, (b,), device=dev, generator=generator)
    oy = torch.randint(0, 2 * crop_pad + 1, (b,), device=dev, generator=generator)
    rows = (oy[:, None] + torch.arange(h, device=dev)[None])  # (B, H)
    cols = (ox[:, None] + torch.arange(w, device=dev)[None])  # (B, W)
    if flip:
        do_flip = torch.rand(b, device=dev, generator=generator) < 0.5
        cols = torch.where(do_flip[:, None], cols.flip(1), cols)
    bi = torch.arange(b, device=dev)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[bi, rows[:, :, None], cols[:, None, :]]  # (B, H, W, 3)
    return out.permute(0, 3, 1, 2).contiguous()


def add_noise(x: torch.Tensor, std: float, generator: torch.Generator | None = None) -> torch.Tensor:
    if std <= 0:
        return x
    return x + std * torch.randn(x.shape, device=x.device, dtype=x.dtype, generator=generator)
