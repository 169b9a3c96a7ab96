"""What each stage's job asks a scheduler for: threads, memory, wall time, GPUs (used by the Snakefile).

The values fit the papers' runs (WRN-28-10, 78k-140k steps) on a GPU cluster. A profile overrides them
per rule (``set-threads``, ``set-resources``); locally, ``--cores N`` caps every job's threads at N and
Snakemake runs as many jobs at once as fit in N cores (and, for GPU jobs, in the GPUs present).
A stage script uses exactly its job's threads: Snakemake exports ``OMP_NUM_THREADS={threads}``, which
PyTorch reads at start-up (recorded as ``device: cpu:... xN threads`` in every provenance block).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Job:
    threads: int
    mem_mb: int
    runtime: int  # minutes of wall time (SLURM: sbatch -t); a killed train job resumes when retried
    gpu: int  # GPUs per job (SLURM: --gpus=N); locally bounded by the GPUs present
    # Snakemake starts ready jobs of higher priority first: the long ones (training, pretraining) before
    # the short ones (generate, evaluate), so that on a few cores the run does not end with one long job
    # alone (on 2 cores the default's last jempp training once ran 90 s by itself)
    priority: int = 0


JOBS: dict[str, Job] = {
    "params": Job(threads=1, mem_mb=1000, runtime=5, gpu=0),
    "data": Job(threads=2, mem_mb=8000, runtime=60, gpu=0),
    "pretrain": Job(threads=8, mem_mb=32000, runtime=720, gpu=1, priority=1),
    "train": Job(threads=8, mem_mb=32000, runtime=1440, gpu=1, priority=1),
    "generate": Job(threads=4, mem_mb=16000, runtime=120, gpu=1),
    "evaluate": Job(threads=4, mem_mb=16000, runtime=240, gpu=1),
    "report": Job(threads=1, mem_mb=4000, runtime=30, gpu=0),
}

# A train job killed at its wall-time limit is resubmitted this many times; each attempt continues from
# the run's resume state (data/resume/..., deliberately not a Snakemake output, so it survives).
TRAIN_RETRIES = 3


def log_path(stage: str, matrix: tuple[str, ...]) -> str:
    """The job's log (stdout and stderr of the stage script), e.g. logs/jobs/train/{objective}/{dataset}.log."""
    return "/".join(["logs/jobs", stage, *("{" + w + "}" for w in matrix)]) + ".log"


def gpus_present() -> int:
    """GPUs this machine shows to its processes, without importing torch (the Snakefile is parsed often)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    gpus = Path("/proc/driver/nvidia/gpus")
    return len(list(gpus.iterdir())) if gpus.is_dir() else 0
