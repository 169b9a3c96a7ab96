"""What every metrics file and checkpoint records about how it was made."""
from __future__ import annotations

import fcntl
import os
import platform
import subprocess
import tempfile
from pathlib import Path

import torch

from ebm.env import UsageError


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


def provenance(*, params_hash: str, seed: int, device: torch.device, sections: list[str],
               **extra: object) -> dict:
    """``extra``: what else changed the result and is not a param (the train stage's bf16 and
    channels-last flags, the dataset's manifest sha256)."""
    return {**extra,
        "params_hash": params_hash,
        "params_sections": sorted(sections),
        "git_revision": git_revision(),
        "torch_version": str(torch.__version__),
        "python_version": platform.python_version(),
        "device": device_name(device),
        "seed": seed,
    }


_HELD: list = []  # GPU slot locks, held open for the life of the process


def free_gpu(n: int, lock_dir: str | Path | None = None) -> int:
    """The first of ``n`` GPUs that no other process on this machine holds, and hold it until exit.

    Concurrent local jobs (``snakemake --cores N`` with ``gpu`` bounded by the GPUs present) then each
    get their own device. The lock is an flock, so the kernel releases it when a job dies."""
    folder = Path(lock_dir or os.environ.get("EBM_GPU_LOCK_DIR")
                  or Path(tempfile.gettempdir()) / f"ebm-gpu-slots-{os.getuid()}")
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        f = open(folder / f"gpu{i}.lock", "w")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            continue
        _HELD.append(f)
        return i
    return os.getpid() % n  # more jobs than GPUs (a run outside Snakemake's gpu bound): share


def pick_device(name: str = "auto") -> torch.device:
    """``auto``: the GPU when there is one (a free one of several), else the CPU. Also accepts ``cpu``,
    ``cuda``, ``cuda:1`` (the stage scripts check the spelling first: ``pipeline.common.device_name``).
    Under SLURM or torchrun (one visible device, or ``LOCAL_RANK``), ``auto`` is ``cuda``."""
    if name == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        n = torch.cuda.device_count()
        if n > 1 and "LOCAL_RANK" not in os.environ:
            i = free_gpu(n)
            torch.cuda.set_device(i)
            return torch.device(f"cuda:{i}")
        return torch.device("cuda")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise UsageError(f"device {name!r} (--device or EBM_DEVICE): expected auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"device {name!r} (--device or EBM_DEVICE): no CUDA device is available here; "
                         "use auto or cpu")
    if dev.type == "cuda" and (dev.index or 0) >= torch.cuda.device_count():
        raise UsageError(f"device {name!r} (--device or EBM_DEVICE): this machine has "
                         f"{torch.cuda.device_count()} CUDA device(s), cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    return dev
