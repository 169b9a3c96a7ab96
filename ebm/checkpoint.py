"""Checkpoints hold plain tensors and dicts only, so they load with ``torch.load(weights_only=True)``."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ebm.config import ModelConfig, from_dict, to_dict
from ebm.io import atomic_torch_save
from ebm.models import build_model


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt or of the wrong format."""


def save_checkpoint(path: str | Path, model: nn.Module, *, model_cfg: ModelConfig, classes: list[str],
                    meta: dict, objective_state: dict | None = None) -> None:
    atomic_torch_save(path, {
        "format": 1,
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "model_cfg": to_dict(model_cfg),
        "classes": list(classes),
        "objective_state": objective_state or {},
        "meta": meta,
    })


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild the model from a checkpoint; returns (model in eval mode, the whole checkpoint dict)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for truncated / foreign files
        raise CheckpointError(f"{path}: cannot be read as a checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != 1:
        raise CheckpointError(f"{path}: not a checkpoint of this project (format 1)")
    model = build_model(from_dict(ModelConfig, ckpt["model_cfg"]), len(ckpt["classes"]))
    model.load_state_dict(ckpt["model"])
    return model.to(device).eval(), ckpt
