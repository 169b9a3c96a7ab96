"""Sharpness-aware minimisation as an optimizer wrapper (Foret et al. 2021, arXiv:2010.01412), with
the adaptive variant ASAM (Kwon et al. 2021, arXiv:2102.11600) that SADA-JEM's code enables for ρ ≥ 0.5.

One SAM update from weights w with loss L:

    g   = ∇L(w)
    e   = ρ · T² g / ‖T g‖₂            T = I (SAM) or T = diag|w| (ASAM)
    w  ← w + e ;  g' = ∇L(w + e) ;  w ← w − e ;  base optimizer step with g'

Usage: ``first_step()`` after the first backward, recompute the loss and backward again, then
``second_step()``. :meth:`step` does the same given a closure that zeroes grads, computes and
back-propagates the loss, and returns it.
"""
from __future__ import annotations

from typing import Callable

import torch


class SAM:
    def __init__(self, base: torch.optim.Optimizer, *, rho: float, adaptive: bool = False, eps: float = 1e-12):
        if rho < 0:
            raise ValueError(f"rho must be >= 0, got {rho}")
        self.base, self.rho, self.adaptive, self.eps = base, rho, adaptive, eps
        self._e: dict[torch.Tensor, torch.Tensor] = {}

    @property
    def param_groups(self) -> list[dict]:
        return self.base.param_groups

    def _params(self) -> list[torch.Tensor]:
        return [p for g in self.base.param_groups for p in g["params"] if p.grad is not None]

    @torch.no_grad()
    def first_step(self) -> None:
        """Move to the sharpest nearby point w + e(w); keeps e to undo it."""
        params = self._params()
        scaled = [(p.abs() if self.adaptive else 1.0) * p.grad for p in params]  # T g
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(s) for s in scaled]))
        scale = self.rho / (norm + self.eps)
        self._e = {}
        for p, s in zip(params, scaled):
            e = (p.abs() if self.adaptive else 1.0) * s * scale  # ρ T² g / ‖T g‖
            p.add_(e)
            self._e[p] = e

    @torch.no_grad()
    def second_step(self) -> None:
        """Return to w and step the base optimizer with the gradient taken at w + e(w)."""
        for p, e in self._e.items():
            p.sub_(e)
        self._e = {}
        self.base.step()

    def step(self, closure: Callable[[], torch.Tensor]) -> torch.Tensor:
        loss = closure()
        self.first_step()
        closure()
        self.second_step()
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.base.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict:
        return {"base": self.base.state_dict(), "rho": self.rho, "adaptive": self.adaptive}

    def load_state_dict(self, state: dict) -> None:
        self.base.load_state_dict(state["base"])
        self.rho, self.adaptive = float(state["rho"]), bool(state["adaptive"])
