"""The embedded default dataset ``shapes`` and its OOD counterpart ``textures``: made, not downloaded.

``shapes``: 32×32 RGB, 10 classes, one filled geometric shape per image (disk, square, triangle, plus,
ring, diamond, frame, X, bars, half-disk) with random colour (light on dark or dark on light), position, scale (radius 6–12 px) and
rotation (±15°, below the 45° that separates square/diamond and plus/X), drawn over a background of a
random colour gradient with pixel noise and a small distractor blob. Rendering is 2× supersampled so
edges are anti-aliased. The same seed gives the same bytes on every machine (numpy PCG64).

``textures``: the OOD set. Same size, colours and noise, but no shape: stripes, checkerboards or smooth
colour blobs. It differs from ``shapes`` in content, not only in noise statistics.
"""
from __future__ import annotations

import numpy as np

SHAPE_CLASSES = ("disk", "square", "triangle", "plus", "ring", "diamond", "frame", "x", "bars", "half_disk")
SIZE = 32
_SS = 2  # supersampling factor
_CHUNK = 512  # images rendered at once (memory: CHUNK × 64 × 64 floats)


def _grid(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates of the supersampled canvas, in output-pixel units, shape (1, H, W)."""
    c = (np.arange(SIZE * _SS) + 0.5) / _SS
    yy, xx = np.meshgrid(c, c, indexing="ij")
    return xx[None], yy[None]


def _shape_mask(cls: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Boolean mask of shape ``cls`` in normalised, rotated coordinates (u, v), radius 1."""
    au, av = np.abs(u), np.abs(v)
    r = np.sqrt(u * u + v * v)
    if cls == 0:  # disk
        return r <= 1.0
    if cls == 1:  # square
        return np.maximum(au, av) <= 0.8
    if cls == 2:  # triangle, apex up
        return (v <= 0.7) & (au <= (v + 0.9) / 1.6 * 0.95)
    if cls == 3:  # plus
        return ((au <= 0.3) & (av <= 0.95)) | ((av <= 0.3) & (au <= 0.95))
    if cls == 4:  # ring
        return (r >= 0.55) & (r <= 1.0)
    if cls == 5:  # diamond
        return au + av <= 1.05
    if cls == 6:  # frame (hollow square)
        m = np.maximum(au, av)
        return (m <= 0.85) & (m >= 0.5)
    if cls == 7:  # X
        a, b = np.abs(u + v) / np.sqrt(2), np.abs(u - v) / np.sqrt(2)
        return ((a <= 0.22) & (b <= 0.95)) | ((b <= 0.22) & (a <= 0.95))
    if cls == 8:  # two horizontal bars
        return (au <= 0.9) & (av >= 0.2) & (av <= 0.6)
    if cls == 9:  # half disk, flat side down
        return (r <= 1.0) & (v <= 0.15)
    raise ValueError(f"unknown shape class {cls}")


def _background(rng: np.random.Generator, n: int) -> np.ndarray:
    """Random two-colour linear gradients, (n, H, W, 3) in [0, 1]."""
    xx, yy = _grid(n)
    theta = rng.uniform(0, 2 * np.pi, size=(n, 1, 1))
    t = ((xx - SIZE / 2) * np.cos(theta) + (yy - SIZE / 2) * np.sin(theta)) / SIZE + 0.5  # (n, H, W)
    c0 = rng.uniform(0, 1, size=(n, 1, 1, 3))
    c1 = np.clip(c0 + rng.normal(0, 0.25, size=(n, 1, 1, 3)), 0, 1)
    return c0 + (c1 - c0) * t[..., None]


def _contrasting_colour(rng: np.random.Generator, ref: np.ndarray) -> np.ndarray:
    """Random colours (n, 3) whose grey level is pushed away from that of ``ref`` (n, 3): light shapes
    on dark backgrounds and dark on light, so the shape's outline is always a clear luminance edge."""
    lum = ref.mean(axis=1, keepdims=True)  # (n, 1)
    target = np.where(lum < 0.5, rng.uniform(0.65, 1.0, size=lum.shape), rng.uniform(0.0, 0.35, size=lum.shape))
    col = rng.uniform(0, 1, size=ref.shape)
    return np.clip(col - col.mean(axis=1, keepdims=True) + target, 0, 1)


def _finish(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    """Downsample the supersampled canvas, add pixel noise, quantise to uint8 (n, 32, 32, 3)."""
    n = img.shape[0]
    img = img.reshape(n, SIZE, _SS, SIZE, _SS, 3).mean(axis=(2, 4))
    img = img + rng.normal(0, 0.03, size=img.shape)
    return np.clip(np.rint(img * 255), 0, 255).astype(np.uint8)


def _render_shapes(rng: np.random.Generator, labels: np.ndarray) -> np.ndarray:
    n = len(labels)
    xx, yy = _grid(n)
    img = _background(rng, n)
    # a small distractor blob, so "a blob of colour" alone does not give the class away
    bc = rng.uniform(4, 28, size=(n, 2, 1, 1))
    blob = (xx - bc[:, 0]) ** 2 + (yy - bc[:, 1]) ** 2 <= rng.uniform(1.0, 2.5, size=(n, 1, 1)) ** 2
    img = np.where(blob[..., None], rng.uniform(0, 1, size=(n, 1, 1, 3)), img)
    radius = rng.uniform(6.0, 12.0, size=(n, 1, 1))
    cx = rng.uniform(0, 1, size=(n, 1, 1)) * (SIZE - 2 * radius) + radius
    cy = rng.uniform(0, 1, size=(n, 1, 1)) * (SIZE - 2 * radius) + radius
    ang = np.deg2rad(rng.uniform(-15, 15, size=(n, 1, 1)))
    dx, dy = (xx - cx) / radius, (yy - cy) / radius
    u = dx * np.cos(ang) + dy * np.sin(ang)
    v = -dx * np.sin(ang) + dy * np.cos(ang)
    fg = _contrasting_colour(rng, img[:, SIZE, SIZE, :])  # contrast with the background's centre
    mask = np.zeros((n, SIZE * _SS, SIZE * _SS), dtype=bool)
    for c in range(len(SHAPE_CLASSES)):
        sel = labels == c
        if sel.any():
            mask[sel] = _shape_mask(c, u[sel], v[sel])
    img = np.where(mask[..., None], fg[:, None, None, :], img)
    return _finish(rng, img)


def make_shapes(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` shape images, balanced over the 10 classes: x (n, 32, 32, 3) uint8, y (n,) int64."""
    rng = np.random.default_rng(seed)
    y = np.arange(n, dtype=np.int64) % len(SHAPE_CLASSES)
    y = y[rng.permutation(n)]
    xs = [_render_shapes(rng, y[i:i + _CHUNK]) for i in range(0, n, _CHUNK)]
    return (np.concatenate(xs) if xs else np.zeros((0, SIZE, SIZE, 3), np.uint8)), y


def _render_textures(rng: np.random.Generator, n: int) -> np.ndarray:
    xx, yy = _grid(n)
    c0 = rng.uniform(0, 1, size=(n, 1, 1, 3))
    c1 = _contrasting_colour(rng, c0[:, 0, 0])[:, None, None, :]
    kind = rng.integers(0, 3, size=n)
    theta = rng.uniform(0, np.pi, size=(n, 1, 1))
    freq = rng.uniform(0.15, 0.6, size=(n, 1, 1))  # cycles per pixel / 2π-free units
    phase = rng.uniform(0, 2 * np.pi, size=(n, 1, 1))
    proj = xx * np.cos(theta) + yy * np.sin(theta)
    stripes = np.sin(proj * freq * 2 + phase) > 0
    checker = (np.floor(xx * freq / 1.5) + np.floor(yy * freq / 1.5)) % 2 == 0
    # smooth blobs: sum of a few random Gaussian bumps, thresholded at its median
    k = 6
    cx, cy = rng.uniform(0, SIZE, size=(n, k, 1, 1)), rng.uniform(0, SIZE, size=(n, k, 1, 1))
    w = rng.uniform(-1, 1, size=(n, k, 1, 1))
    field = (w * np.exp(-((xx[:, None] - cx) ** 2 + (yy[:, None] - cy) ** 2) / 40.0)).sum(axis=1)
    blobs = field > np.median(field, axis=(1, 2), keepdims=True)
    pattern = np.where((kind == 0)[:, None, None], stripes, np.where((kind == 1)[:, None, None], checker, blobs))
    img = np.where(pattern[..., None], c1, c0)
    return _finish(rng, img)


def make_textures(n: int, seed: int) -> np.ndarray:
    """``n`` texture images (no shapes): x (n, 32, 32, 3) uint8."""
    rng = np.random.default_rng(seed)
    xs = [_render_textures(rng, min(_CHUNK, n - i)) for i in range(0, n, _CHUNK)]
    return np.concatenate(xs) if xs else np.zeros((0, SIZE, SIZE, 3), np.uint8)
