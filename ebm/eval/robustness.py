"""White-box adversarial robustness: PGD in the model's input space (images in [-1, 1]).

Units. The model sees images in [-1, 1] (``ebm.augment.to_tensor``: x / 127.5 − 1), so one step of the
[0, 1] pixel range, 1/255, is 2/255 in input space. :func:`pgd` takes ``eps`` and ``step`` in input-space
units; :func:`robust_accuracy` takes budgets in 1/255 of the [0, 1] range, as the papers quote them, and
multiplies by 2/255:

- SADA-JEM: L∞, ε ∈ {1, 2, 4, 8, 12, 16, 22, 30}/255, 50 steps of 2/255, random start;
- JEM: L∞ and L2 curves, 40 steps (20 restarts);
- HybViT: L2, ε ∈ {50, 100, …, 400}/255.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from ebm.augment import to_tensor

NORMS = ("linf", "l2")
TO_INPUT = 2.0 / 255.0  # one 1/255 step of the [0, 1] pixel range, in the [-1, 1] input space


def _per_image_norm(v: torch.Tensor) -> torch.Tensor:
    """L2 norm of each image, shaped (B, 1, 1, 1) for broadcasting against (B, C, H, W)."""
    return v.flatten(1).norm(dim=1).view(-1, *([1] * (v.dim() - 1)))


def _project(x_adv: torch.Tensor, x: torch.Tensor, norm: str, eps: float) -> torch.Tensor:
    """Project ``x_adv`` onto the ε-ball around ``x``, then clamp to [-1, 1]. Clamping toward a point
    inside the box never lengthens δ, so the result satisfies both constraints."""
    delta = x_adv - x  # (B, C, H, W)
    if norm == "linf":
        delta = delta.clamp(-eps, eps)
    else:
        delta = delta * (eps / _per_image_norm(delta).clamp_min(1e-12)).clamp(max=1.0)
    return (x + delta).clamp(-1.0, 1.0)


def _random_start(x: torch.Tensor, norm: str, eps: float, generator: torch.Generator | None) -> torch.Tensor:
    """A point drawn uniformly from the ε-ball around ``x`` (L∞: cube; L2: ball), clamped to [-1, 1]."""
    if norm == "linf":
        u = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)  # (B, C, H, W) in [0, 1)
        delta = (2 * u - 1) * eps
    else:
        d = x[0].numel()
        g = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)  # direction (B, C, H, W)
        r = torch.rand(x.shape[0], generator=generator, device=x.device, dtype=x.dtype) ** (1.0 / d)  # (B,)
        delta = g / _per_image_norm(g).clamp_min(1e-12) * (eps * r).view(-1, *([1] * (x.dim() - 1)))
    return _project(x + delta, x, norm, eps)


def pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, norm: str, eps: float, step: float, steps: int,
        random_start: bool = True, generator: torch.Generator | None = None) -> torch.Tensor:
    """Projected gradient ascent on the cross-entropy of ``model`` (Madry et al.); returns the last iterate.

    ``x`` (B, C, H, W) in [-1, 1] on the model's device, ``y`` (B,) int64. ``eps`` and ``step`` are in
    input-space units (the [-1, 1] range; 1/255 of the pixel range is 2/255 here). L∞: signed-gradient
    steps; L2: steps along the per-image normalised gradient, ``step`` long. Each iterate is projected onto
    the ε-ball around ``x`` and clamped to [-1, 1]. ``random_start``: begin at a uniform draw from the ball
    (using ``generator``, which must live on ``x``'s device). The model is run in eval mode (its previous
    mode is restored) and gradients are taken w.r.t. the input only: parameters' ``.grad`` stay untouched.
    """
    return pgd_attack(model, x, y, norm=norm, eps=eps, step=step, steps=steps, random_start=random_start,
                      generator=generator)[0]


def pgd_attack(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, norm: str, eps: float, step: float,
               steps: int, random_start: bool = True, generator: torch.Generator | None = None,
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`pgd`, plus (B,) bool: was ANY iterate, the start and the last included, misclassified?
    SADA-JEM's evaluation (``attack_batch``) counts an image as broken at its first misclassified iterate
    (METHODS.md §3.5); the iterates' logits are those the attack computes anyway, plus one pass on the last."""
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    x = x.detach()
    if eps <= 0 or steps <= 0:
        return x.clone(), ~_correct(model, x, y)
    was_training = model.training
    model.eval()
    broken = torch.zeros(len(y), dtype=torch.bool, device=x.device)  # (B,)
    try:
        x_adv = _random_start(x, norm, eps, generator) if random_start else x.clone()
        with torch.enable_grad():
            for _ in range(steps):
                x_adv.requires_grad_(True)
                logits = model(x_adv)  # (B, C)
                broken |= logits.detach().argmax(1) != y
                loss = F.cross_entropy(logits, y, reduction="sum")  # sum: each image's own gradient
                (g,) = torch.autograd.grad(loss, x_adv)  # (B, C, H, W)
                with torch.no_grad():
                    if norm == "linf":
                        x_adv = x_adv + step * g.sign()
                    else:
                        x_adv = x_adv + step * g / _per_image_norm(g).clamp_min(1e-12)
                    x_adv = _project(x_adv, x, norm, eps)
        broken |= ~_correct(model, x_adv, y)
    finally:
        model.train(was_training)
    return x_adv.detach(), broken


@torch.no_grad()
def _correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(B,) bool: is each image classified as its label?"""
    return model(x).argmax(1) == y


def _eps_generator(seed: int, eps: float, device: torch.device) -> torch.Generator:
    """A generator for one budget, seeded from (seed, eps): a budget's result does not depend on which
    other budgets are evaluated."""
    s = int(np.random.SeedSequence([int(seed), int(round(eps * 1000))]).generate_state(1)[0])
    return torch.Generator(device=device).manual_seed(s)


def robust_accuracy(model: nn.Module, x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor, *, norm: str,
                    eps_list: list[float], step: float | None = None, step_frac: float | None = None,
                    steps: int, restarts: int = 1, batch_size: int = 500, device: torch.device | str = "cpu",
                    seed: int = 0, progress: bool = False) -> dict[str, float]:
    """Accuracy under white-box PGD, per budget: ``{f"{eps:g}": accuracy}``; ``progress``: a bar over
    the (budget, batch) pairs.

    ``x``: uint8 images (N, 32, 32, 3), or a float tensor (N, 3, H, W) already in [-1, 1]; ``y`` (N,).
    Units: ``eps_list`` in 1/255 of the [0, 1] pixel range (e.g. 8 means 8/255), converted ×2/255 to the
    [-1, 1] input space; eps 0 is clean accuracy. Step: L∞ uses ``step`` in the same 1/255 units
    (SADA-JEM: 2); L2 uses ``step_frac`` · eps (e.g. 0.25; Madry's rule is 2.5 / steps).
    An image counts as robust only if it is classified correctly clean and at every iterate of every one
    of ``restarts`` random-start attacks (SADA-JEM's rule; once broken, it is not attacked again).
    Deterministic given ``seed`` (and the device).
    """
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    if norm == "linf" and step is None:
        raise ValueError("L-inf PGD needs `step` (1/255 units)")
    if norm == "l2" and step_frac is None:
        raise ValueError("L2 PGD needs `step_frac` (step = step_frac · eps)")
    device = torch.device(device)
    xt = x if torch.is_tensor(x) else to_tensor(x)  # (N, 3, H, W) in [-1, 1]
    yt = torch.as_tensor(y, dtype=torch.long)  # (N,)
    n = len(yt)
    if n == 0:
        return {f"{e:g}": float("nan") for e in eps_list}
    was_training = model.training
    model.eval()
    out: dict[str, float] = {}
    bar = tqdm(total=len(eps_list) * -(-n // batch_size), desc=f"PGD {norm}", disable=not progress, leave=False)
    try:
        for eps in eps_list:
            eps_in = float(eps) * TO_INPUT
            step_in = float(step) * TO_INPUT if norm == "linf" else float(step_frac) * eps_in
            gen = _eps_generator(seed, float(eps), device)
            robust = 0
            for i in range(0, n, batch_size):
                xb = xt[i:i + batch_size].to(device)  # (B, 3, H, W)
                yb = yt[i:i + batch_size].to(device)  # (B,)
                alive = _correct(model, xb, yb)  # (B,) bool
                for _ in range(restarts if eps_in > 0 else 0):
                    idx = alive.nonzero().squeeze(1)  # still-robust images
                    if len(idx) == 0:
                        break
                    _, broken = pgd_attack(model, xb[idx], yb[idx], norm=norm, eps=eps_in, step=step_in,
                                           steps=steps, random_start=True, generator=gen)
                    alive[idx] = ~broken
                robust += int(alive.sum())
                bar.update(1)
            out[f"{eps:g}"] = robust / n
    finally:
        bar.close()
        model.train(was_training)
    return out
