"""A deterministic corruption set in the spirit of CIFAR-10-C (Hendrycks & Dietterich 2019), made by the
project: ``corrupt(x, name, severity, seed)`` gives the same bytes for the same arguments. Severities 1–5
use CIFAR-10-C's parameters where it has the corruption."""
from __future__ import annotations

import io

import numpy as np
from scipy.ndimage import gaussian_filter

from ebm.config import CORRUPTIONS

_LEVELS = {
    "gaussian_noise": [0.04, 0.06, 0.08, 0.09, 0.10],  # noise std, [0, 1] pixel units
    "shot_noise": [500, 250, 100, 75, 50],  # Poisson rate: photons per unit intensity
    "gaussian_blur": [0.4, 0.6, 0.7, 0.8, 1.0],  # blur sigma, pixels
    "contrast": [0.75, 0.5, 0.4, 0.3, 0.15],  # contrast factor around each image's mean
    "brightness": [0.05, 0.1, 0.15, 0.2, 0.3],  # added intensity
    "jpeg": [80, 65, 58, 50, 40],  # JPEG quality
    "pixelate": [0.95, 0.9, 0.85, 0.75, 0.65],  # down-scaling factor before nearest up-scaling
}


def _rng(name: str, severity: int, seed: int) -> np.random.Generator:
    return np.random.default_rng([seed, severity, CORRUPTIONS.index(name)])


def _jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def _pixelate(img: np.ndarray, factor: float) -> np.ndarray:
    from PIL import Image

    h, w, _ = img.shape
    small = Image.fromarray(img).resize((int(w * factor), int(h * factor)), Image.BOX)
    return np.asarray(small.resize((w, h), Image.NEAREST))


def corrupt(x: np.ndarray, name: str, severity: int, seed: int = 0) -> np.ndarray:
    """(N, H, W, 3) uint8 → corrupted (N, H, W, 3) uint8; severity 1 (mild) … 5 (strong)."""
    if name not in _LEVELS:
        raise ValueError(f"unknown corruption {name!r} (known: {list(_LEVELS)})")
    if not 1 <= severity <= 5:
        raise ValueError(f"severity must be in 1..5, got {severity}")
    c = _LEVELS[name][severity - 1]
    if name in ("jpeg", "pixelate"):
        fn = _jpeg if name == "jpeg" else _pixelate
        return np.stack([fn(img, c) for img in x])
    f = x.astype(np.float64) / 255.0  # (N, H, W, 3) in [0, 1]
    if name == "gaussian_noise":
        f = f + _rng(name, severity, seed).normal(0.0, c, f.shape)
    elif name == "shot_noise":
        f = _rng(name, severity, seed).poisson(f * c) / c
    elif name == "gaussian_blur":
        f = gaussian_filter(f, sigma=(0, c, c, 0), mode="reflect")
    elif name == "contrast":
        mean = f.mean(axis=(1, 2, 3), keepdims=True)
        f = (f - mean) * c + mean
    elif name == "brightness":
        f = f + c
    return (np.clip(f, 0, 1) * 255).round().astype(np.uint8)
