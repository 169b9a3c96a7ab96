"""Resume state of a run with several processes: every rank keeps its own file.

Rank r of W writes ``state.rank<r>-of<W>.step<S>.pt`` (its replay-buffer shard, its RNG streams, the
queue, and the model and optimizer, which all ranks share). A rank deletes its older files only after
every rank has written step S (a barrier), so at any moment each rank holds the newest step that all
ranks completed; :meth:`RankResumeStore.load` agrees on it with one all-reduce (MIN). A single process
keeps ``state.pt`` (the train stage's ResumeStore). Both write and read their files through
:mod:`ebm.checkpoint` (one format, one loader). A state written by another number of processes is
refused with an error that says how to resume it (:func:`check_world`).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

import torch
import torch.distributed as dist

from ebm.checkpoint import read_resume_state, write_resume_state
from ebm.distributed import World, WorldSizeError, barrier
from ebm.io import atomic_write_text

_NAME = re.compile(r"state\.rank(\d+)-of(\d+)\.step(\d+)\.pt")
README = ("Resume state of a train stage: state.pt (one process) or state.rank<r>-of<W>.step<S>.pt (one file "
          "per rank) appear here while the run is in progress and are removed when it finishes.\n")


def saved_world_sizes(folder: str | Path) -> set[int]:
    """The numbers of processes whose resume states lie in ``folder`` (``state.pt`` counts as 1)."""
    folder = Path(folder)
    sizes = {int(m[2]) for p in folder.glob("state.rank*.pt") if (m := _NAME.fullmatch(p.name))}
    return sizes | ({1} if (folder / "state.pt").is_file() else set())


def check_world(folder: str | Path, world: World) -> None:
    """Refuse to start over a resume state of another world size (the replay-buffer shards, RNG streams and
    data slices are per rank, so they do not carry over); say how to resume it instead."""
    other = sorted(saved_world_sizes(folder) - {world.size})
    if other:
        n = other[-1]
        how = ("plain `python -m pipeline.train …`" if n == 1 else
               f"`torchrun --standalone --nproc-per-node {n} -m pipeline.train …` (or EBM_NPROC={n})")
        raise WorldSizeError(f"{folder} holds the resume state of a run with {n} process(es), this run has "
                             f"{world.size}: resume it with {how}, or delete {folder} to start afresh")


class RankResumeStore:
    """The ResumeStore interface (load, save, finish, path) for rank ``world.rank`` of ``world.size``."""

    def __init__(self, folder: str | Path, params_hash: str, world: World, log: Callable[[str], None] = print):
        self.folder, self.hash, self.world, self.log = Path(folder), params_hash, world, log
        self.path = self._file(0)  # a representative name; ``exists()`` below is what callers ask

    def _file(self, step: int) -> Path:
        return self.folder / f"state.rank{self.world.rank}-of{self.world.size}.step{step}.pt"

    def _mine(self) -> dict[int, Path]:
        out = {}
        for p in self.folder.glob(f"state.rank{self.world.rank}-of{self.world.size}.step*.pt"):
            if m := _NAME.fullmatch(p.name):
                out[int(m[3])] = p
        return out

    def exists(self) -> bool:
        return bool(self._mine())

    def load(self) -> dict | None:
        """The state of the newest step every rank has written (collective: all ranks call it)."""
        mine = self._mine()
        latest = torch.tensor([max(mine, default=-1)], dtype=torch.int64)
        if dist.is_initialized():
            dist.all_reduce(latest, op=dist.ReduceOp.MIN)
        step = int(latest)
        if step < 0:
            return None
        state = read_resume_state(mine[step])  # a foreign or corrupt file: CheckpointError naming it
        if state.get("params_hash") != self.hash:  # the hash is the same on every rank: all start fresh
            self.log(f"resume: {mine[step]} was written with other params; starting fresh")
            return None
        if self.world.main:
            self.log(f"resume: continuing from step {step} ({self.folder}, {self.world.size} ranks)")
        return state["trainer"]

    def save(self, trainer_state: dict) -> None:
        step = int(trainer_state["step"])
        write_resume_state(self._file(step), self.hash, trainer_state, world_size=self.world.size,
                           rank=self.world.rank)
        barrier()  # every rank holds step S now: the others (older, or left by an earlier run) may go
        for s, p in self._mine().items():
            if s != step:
                p.unlink(missing_ok=True)

    def finish(self) -> None:
        """After rank 0 wrote the outputs: every rank drops its files; the folder stays with a note."""
        barrier()
        for p in self._mine().values():
            p.unlink(missing_ok=True)
        if self.world.main:
            atomic_write_text(self.folder / "README.txt", README)
