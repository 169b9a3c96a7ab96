"""The one signature every training objective shares.

An objective is built from its params section and the common training settings, owns any state it
needs (a replay buffer, a memory of negatives), and maps a :class:`Batch` to a scalar loss plus a dict
of scalar tensors to log. Reading the logged tensors back to the host is the caller's business, done
only every ``log_every`` steps.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from ebm.sampling import ChainSampler


@dataclass
class Batch:
    x_lab: torch.Tensor  # (B, 3, 32, 32) labelled images, augmented, for the cross-entropy branch
    y: torch.Tensor  # (B,) labels
    x_px: torch.Tensor  # (B', 3, 32, 32) a second, independent stream for the maximum-likelihood branch
    x_px_clean: torch.Tensor | None = None  # the same images un-augmented (SADA-JEM's ML branch)


def total(ce: torch.Tensor, rest: torch.Tensor | None) -> torch.Tensor:
    """The loss of :meth:`Objective.terms`' two parts: their sum (``ce`` alone when there is no rest)."""
    return ce if rest is None else ce + rest


def summed(ce: torch.Tensor, rest: torch.Tensor | None, logs: dict[str, torch.Tensor]
           ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """:func:`total` and the scalars to log, ``loss`` first."""
    loss = total(ce, rest)
    return loss, {"loss": loss.detach(), **logs}


class Objective:
    """What the train loop may ask of an objective; subclasses set ``name`` and implement :meth:`terms`.

    - :meth:`terms`: the loss in two parts, the cross-entropy (at its weight) and the rest (None when there
      is none this step), and the scalars to log (``acc`` among them); :meth:`loss` is their sum, with
      ``loss`` logged too. :attr:`split_share` > 0 asks the loop to step the two parts with an optimizer
      state each (:class:`~ebm.train.SplitOptimizer`);
    - :attr:`sam`: SAM's settings (``rho``, ``adaptive``) when the loop must wrap its optimizer in SAM,
      else None; then :meth:`perturbed_terms` are the terms of SAM's second pass at w + ε(w);
    - :meth:`set_step`: the loop tells the objective which training step comes next (schedules);
    - :attr:`trains_sampler`: whether it trains with SGLD chains; then :meth:`sampler` is that sampler
      (the generate stage samples with it), and :meth:`reset_sampler` re-initialises its state after a
      divergence;
    - :meth:`state_dict` / :meth:`load_state_dict`: the state to save with a checkpoint and restore
      on resume (plain tensors and dicts); :meth:`to` moves it to a device.
    """

    name: str = ""
    sam: dict | None = None
    trains_sampler: bool = False

    def sampler(self, image_shape: tuple[int, ...] = (3, 32, 32)) -> ChainSampler:
        """The :class:`~ebm.sampling.ChainSampler` this objective trains with (only if ``trains_sampler``)."""
        raise NotImplementedError(f"objective {self.name!r} trains no sampler")

    @property
    def uses_sam(self) -> bool:
        return self.sam is not None

    @property
    def split_share(self) -> float:
        """The rest's learning rate as a fraction of the cross-entropy's, each with its own optimizer state;
        0 = one optimizer for the whole loss (the section's ``split_optimizer``; 0 where it has none)."""
        return getattr(getattr(self, "cfg", None), "split_optimizer", 0.0)

    def terms(self, model: nn.Module, batch: Batch
              ) -> tuple[torch.Tensor, torch.Tensor | None, dict[str, torch.Tensor]]:
        """(the cross-entropy term, the rest of the loss or None, the scalars to log)."""
        raise NotImplementedError

    def loss(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The scalar to minimise (the two terms' sum) and the scalars to log, ``loss`` first."""
        return summed(*self.terms(model, batch))

    def perturbed_terms(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, torch.Tensor | None]:
        """:meth:`terms` at SAM's second pass, w + ε(w) (objectives with :attr:`sam` only)."""
        raise NotImplementedError(f"objective {self.name!r} does not use SAM")

    def perturbed_loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        """The loss of SAM's second pass: the sum of :meth:`perturbed_terms`."""
        return total(*self.perturbed_terms(model, batch))

    def to(self, device: torch.device | str) -> "Objective":
        return self

    def set_step(self, step: int) -> None:
        """The next training step (0-based), for objectives whose terms follow a schedule."""

    def reset_sampler(self) -> bool:
        """Re-initialise any sampler state (after a divergence; ``set_step`` has been told the step training
        resumes from); whether anything was re-initialised. No-op for objectives without one."""
        return False

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        if state:
            raise ValueError(f"objective {self.name!r} has no state, got keys {sorted(state)}")
