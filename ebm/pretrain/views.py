"""SimCLR-style augmented views on the device: random resized crop, horizontal flip, colour jitter."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _u(n: int, lo: float, hi: float, x: torch.Tensor, g: torch.Generator | None) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, device=x.device, generator=g)


def random_view(x: torch.Tensor, *, crop_scale: float, color_jitter: float,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """One view of each image x (B, 3, H, W) in [-1, 1]: a square crop covering a uniform fraction in
    [crop_scale, 1] of the area, resized back (bilinear), flipped with probability ½, then brightness,
    contrast and saturation each scaled by a factor in [1 − j, 1 + j]. Deterministic given ``generator``."""
    b = len(x)
    side = _u(b, crop_scale, 1.0, x, generator).sqrt()  # (B,) crop side as a fraction of the image
    cx = _u(b, -1.0, 1.0, x, generator) * (1 - side)  # centre keeps the crop inside the image
    cy = _u(b, -1.0, 1.0, x, generator) * (1 - side)
    flip = torch.where(torch.rand(b, device=x.device, generator=generator) < 0.5, -1.0, 1.0)
    theta = torch.zeros(b, 2, 3, device=x.device)
    theta[:, 0, 0], theta[:, 0, 2] = side * flip, cx
    theta[:, 1, 1], theta[:, 1, 2] = side, cy
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)  # (B, H, W, 2)
    v = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    if color_jitter > 0:
        j = color_jitter
        v = (v + 1) / 2  # jitter in [0, 1]
        v = v * _u(b, 1 - j, 1 + j, x, generator).view(b, 1, 1, 1)  # brightness
        mean = v.mean(dim=(1, 2, 3), keepdim=True)
        v = (v - mean) * _u(b, 1 - j, 1 + j, x, generator).view(b, 1, 1, 1) + mean  # contrast
        gray = (0.299 * v[:, 0] + 0.587 * v[:, 1] + 0.114 * v[:, 2]).unsqueeze(1)
        v = (v - gray) * _u(b, 1 - j, 1 + j, x, generator).view(b, 1, 1, 1) + gray  # saturation
        v = v.clamp(0, 1) * 2 - 1
    return v
