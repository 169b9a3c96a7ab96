"""Checkpoints hold plain tensors and dicts only, so they load with ``torch.load(weights_only=True)``."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ebm.config import ModelConfig, from_dict, to_dict
from ebm.errors import CheckpointError
from ebm.io import atomic_torch_save
from ebm.models import build_model


CHECKPOINT_KEYS = {"model": dict, "model_cfg": dict, "classes": list, "objective_state": dict, "meta": dict}


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
    for key, kind in CHECKPOINT_KEYS.items():
        if not isinstance(ckpt.get(key), kind):
            raise CheckpointError(f"{path}: checkpoint lacks key {key!r} (or it is not a {kind.__name__})")
    try:
        model = build_model(from_dict(ModelConfig, ckpt["model_cfg"]), len(ckpt["classes"]))
        model.load_state_dict(ckpt["model"])
    except Exception as e:  # a config or weights that do not fit this code's model
        raise CheckpointError(f"{path}: model config or weights do not fit this project's model "
                              f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
    return model.to(device).eval(), ckpt
