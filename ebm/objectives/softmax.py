"""Plain discriminative baseline: L = CE(f(x), y) = -log softmax(f(x))_y (optionally label-smoothed)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ebm.config import SoftmaxConfig, TrainCommon
from ebm.objectives.base import Batch, Objective


class Softmax(Objective):
    name = "softmax"

    def __init__(self, cfg: SoftmaxConfig, common: TrainCommon, *, n_classes: int, image_shape: tuple[int, ...],
                 data: tuple[torch.Tensor, torch.Tensor] | None = None):
        self.cfg = cfg

    def terms(self, model: nn.Module, batch: Batch
              ) -> tuple[torch.Tensor, torch.Tensor | None, dict[str, torch.Tensor]]:
        logits = model(batch.x_lab)  # (B, C)
        ce = F.cross_entropy(logits, batch.y, label_smoothing=self.cfg.label_smoothing)
        acc = (logits.argmax(1) == batch.y).float().mean()
        return ce, None, {"ce": ce.detach(), "acc": acc, "e_data": -torch.logsumexp(logits.detach(), 1).mean()}
