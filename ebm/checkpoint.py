"""Every file of weights or run state: model checkpoints, pretrained models and resume states.

Each holds plain tensors and dicts only and carries a ``format`` tag. Writing is atomic
(:func:`ebm.io.atomic_torch_save`); reading goes through :func:`read_checkpoint`, the project's one
call of torch's loader, with ``weights_only=True``; a missing, unreadable or foreign file raises
:class:`~ebm.errors.CheckpointError` naming the file and what is wrong.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ebm.config import ModelConfig, PretrainConfig, from_dict, to_dict
from ebm.errors import CheckpointError
from ebm.io import atomic_torch_save, atomic_write_text
from ebm.models import build_model

MODEL_FORMAT = 1  # a trained classifier/EBM: weights, model config, classes, objective state, meta
PRETRAIN_FORMAT = "pretrain-1"  # a pretrained hybrid transformer for one contrastive weight
RESUME_FORMAT = "resume-1"  # a train run's whole state, stamped with its params hash


def weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}


def read_checkpoint(path: str | Path, fmt: int | str, what: str = "checkpoint") -> dict:
    """The file at ``path`` as a dict, checked to carry format ``fmt``; ``what`` names it in errors."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: {what} not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for truncated / foreign files
        raise CheckpointError(f"{path}: cannot be read as a checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != fmt:
        raise CheckpointError(f"{path}: not a {what} of this project (format {fmt})")
    return ckpt


# ----------------------------------------------------------------------------------------------------
# Trained models (train stage → generate, evaluate)

CHECKPOINT_KEYS = {"model": dict, "model_cfg": dict, "classes": list, "objective_state": dict, "meta": dict}


def save_checkpoint(path: str | Path, model: nn.Module, *, model_cfg: ModelConfig, classes: list[str],
                    meta: dict, objective_state: dict | None = None) -> None:
    atomic_torch_save(path, {
        "format": MODEL_FORMAT,
        "model": weights(model),
        "model_cfg": to_dict(model_cfg),
        "classes": list(classes),
        "objective_state": objective_state or {},
        "meta": meta,
    })


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild the model from a checkpoint; returns (model in eval mode, the whole checkpoint dict)."""
    ckpt = read_checkpoint(path, MODEL_FORMAT)
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


# ----------------------------------------------------------------------------------------------------
# Pretrained models (pretrain stage), one file per contrastive weight

def save_pretrained(path: str | Path, model: nn.Module, cfg: PretrainConfig, weight: float, meta: dict) -> None:
    atomic_torch_save(path, {"format": PRETRAIN_FORMAT, "model": weights(model), "pretrain_cfg": to_dict(cfg),
                             "contrastive_weight": weight, "meta": meta})


def load_pretrained(path: str | Path, build: Callable[[PretrainConfig], nn.Module],
                    device: torch.device | str = "cpu") -> tuple[nn.Module, dict]:
    """``build(cfg)`` makes the empty model (``ebm.pretrain.train.build_model``); returns (model in eval
    mode, the whole file's dict)."""
    ckpt = read_checkpoint(path, PRETRAIN_FORMAT, "pretrained model")
    model = build(from_dict(PretrainConfig, ckpt["pretrain_cfg"]))
    model.load_state_dict(ckpt["model"])
    return model.to(device).eval(), ckpt


# ----------------------------------------------------------------------------------------------------
# Resume state of a train run: one file (ResumeStore) or one per rank under DDP (ebm/rank_resume.py)

def write_resume_state(path: str | Path, stamp: str, trainer_state: dict, **extra) -> None:
    """``stamp``: what the state is only valid for (params, data, code); ``extra``: e.g. the rank."""
    atomic_torch_save(path, {"format": RESUME_FORMAT, "params_hash": stamp, **extra, "trainer": trainer_state})


def read_resume_state(path: str | Path) -> dict:
    """The file's dict; :class:`CheckpointError` when it is unreadable, foreign or holds no trainer state."""
    state = read_checkpoint(path, RESUME_FORMAT, "resume state")
    if not (isinstance(state.get("trainer"), dict) and "step" in state["trainer"]):
        raise CheckpointError(f"{path}: not a resume state of this project (no trainer state with a step)")
    return state


class ResumeStore:
    """A run's resume state in ``folder/state.pt``, stamped with ``stamp``: the train stage passes a hash
    of its params sections, the dataset's manifest and its code. A state with another stamp is ignored
    (and said so): the run starts fresh."""

    def __init__(self, folder: str | Path, params_hash: str, log: Callable[[str], None] = print):
        self.folder, self.hash, self.log = Path(folder), params_hash, log
        self.path = self.folder / "state.pt"

    def load(self) -> dict | None:
        if not self.path.is_file():
            return None
        try:
            state = read_resume_state(self.path)
        except CheckpointError as e:  # a truncated file cannot happen (atomic writes), a foreign one can
            self.log(f"resume: unusable state ({e}); starting fresh")
            return None
        if state.get("params_hash") != self.hash:
            self.log(f"resume: {self.path} was written for other params, data or code (stamp "
                     f"{str(state.get('params_hash'))[:12]}…, this run {self.hash[:12]}…); starting fresh")
            return None
        return state["trainer"]  # train() says "continuing from step …" once it has loaded

    def save(self, trainer_state: dict) -> None:
        write_resume_state(self.path, self.hash, trainer_state)

    def finish(self) -> None:
        """The run's outputs are written: drop the state; the folder stays (a DVC output) with a note."""
        atomic_write_text(self.folder / "README.txt", "Resume state of a train stage: state.pt appears "
                          "here while the run is in progress and is removed when it finishes.\n")
        if self.path.exists():
            self.path.unlink()
