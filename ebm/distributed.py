"""Several processes per run, on PyTorch's own machinery: torchrun, ``torch.distributed``, DDP.

torchrun sets ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE``; :func:`init_world` then joins the process
group (NCCL on GPUs, gloo on the CPU). Without them, or with one process, the :class:`World` is a single
process and every helper here is the identity, so a one-process run is exactly the run it was before
(nanoGPT's pattern: ``ddp = int(os.environ.get('RANK', -1)) != -1``).

Conventions, for every rank of one run:
- ``train.common.batch_size`` is the *global* batch; each rank takes a contiguous, disjoint slice of it
  (:func:`shard`) from the same epoch permutation, which depends only on the seed and the epoch;
- random streams of rank r are seeded with :func:`rank_seed` (seed, r); rank 0 keeps the plain seed;
- rank 0 alone writes outputs (``World.main``).
"""
from __future__ import annotations

import contextlib
import dataclasses
import inspect
import os
import shlex
import sys
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ebm import env
from ebm.errors import UsageError, WorldSizeError


@dataclass(frozen=True)
class World:
    rank: int = 0
    local_rank: int = 0
    size: int = 1

    @property
    def main(self) -> bool:
        """This process writes the run's outputs (rank 0)."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def init_world(device: torch.device) -> tuple[World, torch.device]:
    """Join torchrun's process group when there is more than one process; returns the world and this
    rank's device (``cuda:LOCAL_RANK`` on GPUs, the CPU otherwise)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if "RANK" not in os.environ or size == 1:
        return World(), device
    world = World(int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0")), size)
    backend = process_group_backend(device)
    if device.type == "cuda":
        n = torch.cuda.device_count()
        if world.local_rank >= n and backend == "nccl":
            raise WorldSizeError(f"{size} processes but {n} GPU(s) on this node: NCCL needs one GPU per process "
                                 f"(--nproc-per-node {n}); EBM_DIST_BACKEND=gloo lets processes share a GPU")
        device = torch.device("cuda", world.local_rank % n)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend)
    return world, device


def process_group_backend(device: torch.device) -> str:
    """NCCL on GPUs, gloo on the CPU; ``EBM_DIST_BACKEND=gloo`` on GPUs lets several processes share one
    GPU (a check of the multi-process path on a one-GPU machine; slow, not for real runs)."""
    backend = env.text_var("EBM_DIST_BACKEND", "nccl" if device.type == "cuda" else "gloo")
    if backend not in ("nccl", "gloo"):
        raise UsageError(f"EBM_DIST_BACKEND={backend!r}: expected nccl or gloo")
    if backend == "nccl" and device.type != "cuda":
        raise UsageError("EBM_DIST_BACKEND=nccl needs GPUs; on the CPU use gloo (the default)")
    return backend


def relaunch_under_torchrun(module: str, argv: list[str]) -> None:
    """With ``EBM_NPROC=N`` > 1, outside torchrun: replace this process by
    ``torchrun --standalone --nproc-per-node N -m <module> <argv>`` (for `dvc repro`, which has no resources)."""
    n = env.int_var("EBM_NPROC", 1)
    if n == 1 or "RANK" in os.environ:
        return
    cmd = ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(n), "-m", module, *argv]
    print("launching: torchrun " + shlex.join(cmd[2:]), flush=True)
    os.execv(sys.executable, [sys.executable, *cmd])


def close_world() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


@contextlib.contextmanager
def joined(device: torch.device) -> Iterator[tuple[World, torch.device]]:
    """:func:`init_world` for the duration of a block; leaves the process group on the way out."""
    try:
        yield init_world(device)
    finally:
        close_world()


def rank_seed(seed: int, rank: int) -> int:
    """The seed of rank ``rank``'s random streams: ``seed`` itself on rank 0 (one process runs as before),
    a hash of (seed, rank) elsewhere, so no rank of one seed shares a stream with a rank of another."""
    if rank == 0:
        return seed
    return int(np.random.SeedSequence([seed, rank]).generate_state(1)[0])


def per_rank(n: int, world: World, what: str) -> int:
    """``n`` split evenly over the ranks; a remainder is an error naming the setting."""
    if n % world.size:
        raise WorldSizeError(f"{what} = {n} does not split over {world.size} processes; "
                             f"use a multiple of {world.size} or another --nproc-per-node")
    return n // world.size


def per_rank_params(params, objective: str, world: World):
    """``params`` with the sampler of ``train.<objective>`` split over the ranks: each keeps a replay-buffer
    shard of ``buffer_size / world`` chains and advances ``sample_batch_size / world`` of them per step.
    Also checks that the global batch splits. One process: ``params`` itself."""
    if not world.distributed:
        return params
    per_rank(params.train.common.batch_size, world, "train.common.batch_size")
    cfg = getattr(params.train, objective)
    split = {k: per_rank(getattr(cfg, k), world, f"train.{objective}.{k}")
             for k in ("buffer_size", "sample_batch_size") if hasattr(cfg, k)}
    train = dataclasses.replace(params.train, **{objective: dataclasses.replace(cfg, **split)})
    return dataclasses.replace(params, train=train)


def shard(idx: torch.Tensor, world: World) -> torch.Tensor:
    """This rank's contiguous slice of a global batch of indices (the slices are disjoint)."""
    n = len(idx) // world.size
    return idx[world.rank * n:(world.rank + 1) * n]


def wrap(model: nn.Module, world: World, device: torch.device, log=print, **ddp_kwargs) -> nn.Module:
    """DDP around ``model`` when there are several processes (batch norm → SyncBatchNorm on GPUs). DDP
    broadcasts rank 0's weights and buffers at construction, but not the buffers at every forward
    (``forward_sync_buffers=False``): with SyncBatchNorm the running statistics agree already, and the
    broadcast would break the several forward passes per step of the hybrid objectives."""
    if not world.distributed:
        return model
    has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    if has_bn and device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    elif has_bn and world.main:  # PyTorch's SyncBatchNorm runs on GPUs only
        log("note: SyncBatchNorm needs GPUs; on the CPU each rank normalises with its own batch statistics")
    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids, **_NO_FORWARD_BUFFER_SYNC, **ddp_kwargs)


# PyTorch ≥ 2.14 names it forward_sync_buffers (broadcast_buffers is deprecated there); older releases, such
# as the ones preinstalled on GPU images, only know broadcast_buffers (which there also skips the buffers'
# broadcast at construction; they start equal on every rank anyway: batch norm's zeros and ones).
_NO_FORWARD_BUFFER_SYNC = ({"forward_sync_buffers": False}
                           if "forward_sync_buffers" in inspect.signature(DistributedDataParallel.__init__).parameters
                           else {"broadcast_buffers": False})


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside DDP (what a checkpoint stores)."""
    return model.module if isinstance(model, DistributedDataParallel) else model


def no_sync(model: nn.Module) -> contextlib.AbstractContextManager:
    """DDP's ``no_sync`` (backward passes that must not all-reduce, e.g. SGLD's input gradients)."""
    return model.no_sync() if isinstance(model, DistributedDataParallel) else contextlib.nullcontext()


@torch.no_grad()
def gather_cat(x: torch.Tensor) -> torch.Tensor:
    """All ranks' ``x`` concatenated in rank order, no gradient (MoCo's ``concat_all_gather``)."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """All ranks' ``x`` concatenated in rank order, differentiable (``torch.distributed.nn.all_gather``:
    its backward sums every rank's gradient for this rank's part), for losses over the global batch."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return x
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x))


@torch.no_grad()
def all_reduce_mean(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """Each tensor's mean over the ranks, in one all-reduce (as DDP averages gradients); one process: as they are."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return tensors
    flat = torch.cat([t.reshape(-1) for t in tensors])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    # each back in its own memory format (a channels-last weight's gradient stays channels-last)
    return [torch.empty_like(t).copy_(part.view_as(t)) for part, t in zip(flat.split([t.numel() for t in tensors]), tensors)]


def reduce_step(flag: bool, values: dict[str, float]) -> tuple[bool, dict[str, float]]:
    """One all-reduce per step: whether any rank flagged divergence, and each value's mean over ranks."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return flag, values
    t = torch.tensor([float(flag), *values.values()], dtype=torch.float64)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t)
    t = t.cpu()
    return bool(t[0] > 0), {k: float(v) / dist.get_world_size() for k, v in zip(values, t[1:])}


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()
