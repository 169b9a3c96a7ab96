"""Objectives registry: name → class with the shared constructor and ``terms(model, batch)`` (``loss`` is their sum)."""
from __future__ import annotations

import torch

from ebm.config import Params
from ebm.objectives.base import Batch, Objective
from ebm.objectives.hdge import HDGE, HDGEJEM
from ebm.objectives.jem import JEM
from ebm.objectives.jempp import JEMPP
from ebm.objectives.sada_jem import SADAJEM
from ebm.objectives.softmax import Softmax

REGISTRY: dict[str, type[Objective]] = {"softmax": Softmax, "jem": JEM, "jempp": JEMPP, "sada_jem": SADAJEM,
                                        "hdge": HDGE, "hdge_jem": HDGEJEM}


def build_objective(name: str, params: Params, *, n_classes: int, image_shape: tuple[int, ...] = (3, 32, 32),
                    data: tuple[torch.Tensor, torch.Tensor] | None = None) -> Objective:
    """``data``: training images (N, 3, 32, 32) in [-1, 1] and labels, for objectives that fit something
    on them (JEM++'s informative init)."""
    if name not in REGISTRY:
        raise KeyError(f"unknown objective {name!r} (known: {sorted(REGISTRY)})")
    cfg = getattr(params.train, name)
    return REGISTRY[name](cfg, params.train.common, n_classes=n_classes, image_shape=image_shape, data=data)


__all__ = ["Batch", "Objective", "REGISTRY", "build_objective"]
