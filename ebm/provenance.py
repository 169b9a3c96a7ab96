"""What every metrics file and checkpoint records about how it was made."""
from __future__ import annotations

import platform
import subprocess
from pathlib import Path

import torch


def git_revision(cwd: str | Path = ".") -> str:
    """HEAD's commit, with ``-dirty`` when tracked files differ from it; ``unknown`` outside git."""
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True,
                             check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, check=True, timeout=10).stdout.strip()
        return rev + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return f"cpu:{platform.processor() or platform.machine()} x{torch.get_num_threads()} threads"


def provenance(*, params_hash: str, seed: int, device: torch.device, sections: list[str]) -> dict:
    return {
        "params_hash": params_hash,
        "params_sections": sorted(sections),
        "git_revision": git_revision(),
        "torch_version": str(torch.__version__),
        "python_version": platform.python_version(),
        "device": device_name(device),
        "seed": seed,
    }


def pick_device(name: str = "auto") -> torch.device:
    """``auto``: the GPU when there is one, else the CPU. Also accepts ``cpu``, ``cuda``, ``cuda:1``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"--device {name}: no CUDA device is available")
    return dev
