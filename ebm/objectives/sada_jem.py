"""SADA-JEM: "Towards Bridging the Performance Gaps of Joint Energy-based Models" (Yang, Su & Ji,
CVPR 2023, arXiv:2209.07959).

JEM++'s sampler (informative init, clipped and projected SGLD, here K = 5) plus two changes:

* Sharpness-aware minimisation of the whole loss: with ε(w) = ρ T² g / ‖T g‖ (T = I, or |w| for ASAM),
  min_w L(w + ε(w)), L = CE(f(x_lab), y) + px_weight · [-mean LSE f(x+) + mean LSE f(x~)];
  the second (perturbed) pass reuses the same samples x~ and runs with batch-norm statistics frozen.
* No data augmentation in the maximum-likelihood branch: x+ are the training images as they are
  (no crop, flip or noise); only the cross-entropy branch is augmented.
"""
from __future__ import annotations

import torch
from torch import nn

from ebm.objectives.base import Batch
from ebm.objectives.jempp import JEMPP


class SADAJEM(JEMPP):
    name = "sada_jem"

    @property
    def sam(self) -> dict:  # type: ignore[override]
        """The train loop wraps its optimizer in SAM with these settings."""
        return {"rho": self.cfg.rho, "adaptive": self.cfg.adaptive}

    def px_input(self, batch: Batch) -> torch.Tensor:
        if batch.x_px_clean is None:
            raise ValueError("sada_jem needs the un-augmented p(x) batch (Batch.x_px_clean)")
        return batch.x_px_clean

    def terms(self, model: nn.Module, batch: Batch
              ) -> tuple[torch.Tensor, torch.Tensor | None, dict[str, torch.Tensor]]:
        self._x_fake = self.sample(model) if self.px_active else None  # kept for the perturbed pass
        return super().terms(model, batch, x_fake=self._x_fake)

    def perturbed_terms(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, torch.Tensor | None]:
        """SAM's second pass at w + ε(w): the same samples, and the energy penalty ``energy_l2`` too. The
        authors' code leaves its ``l2_coeff`` out of this pass, but SAM updates the weights with this
        pass's gradient alone, so there the penalty never reaches the update; the paper's recipe has it at
        0, where both agree."""
        return super().terms(model, batch, x_fake=self._x_fake)[:2]
