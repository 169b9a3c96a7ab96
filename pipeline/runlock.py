"""One runner at a time in a workspace: ``dvc repro`` or ``snakemake``, never both.

Snakemake takes an exclusive ``flock`` on :data:`SNAKEMAKE_LOCK` in its ``onstart`` handler and holds it
until it exits (the kernel drops it even after kill -9); before that it refuses to start while DVC holds
its repository lock (``.dvc/tmp/lock``, held between stages) or runs a stage (``.dvc/tmp/rwlock`` lists a
live process). Every stage script started by DVC (DVC sets ``DVC_STAGE``) refuses to start while the
Snakemake lock is held. Either way the second runner stops at once with a message naming the first.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
from pathlib import Path
from typing import IO

from ebm.errors import RunnerBusy

SNAKEMAKE_LOCK = Path(".snakemake/ebm-runner.lock")
DVC_LOCK, DVC_RWLOCK = Path(".dvc/tmp/lock"), Path(".dvc/tmp/rwlock")
_held: list[IO[str]] = []  # keeps Snakemake's lock open for the life of its process


def _flock_free(path: Path) -> bool:
    """Whether nobody holds an flock on ``path`` (taken and released at once to find out)."""
    if not path.is_file():
        return True
    with open(path) as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False
        fcntl.flock(f.fileno(), fcntl.LOCK_UN)
    return True


def _alive(pid: object) -> bool:
    try:
        os.kill(int(pid), 0)  # type: ignore[arg-type]
    except (ProcessLookupError, ValueError, TypeError):
        return False
    except PermissionError:
        return True
    return True


def dvc_activity(root: Path = Path(".")) -> str | None:
    """What DVC is doing in ``root`` ("pid 123: dvc repro"), or None when it is idle."""
    with contextlib.suppress(OSError, ValueError):
        info = json.loads((root / DVC_RWLOCK).read_text() or "{}")
        for kind in ("write", "read"):
            for entries in info.get(kind, {}).values():
                for e in entries if isinstance(entries, list) else [entries]:
                    if isinstance(e, dict) and _alive(e.get("pid")):
                        return f"pid {e['pid']}: {e.get('cmd', 'dvc')}"
    if not _flock_free(root / DVC_LOCK):
        return "it holds the repository lock " + str(DVC_LOCK)
    return None


def take_for_snakemake(root: Path = Path(".")) -> None:
    """Snakemake's ``onstart``: refuse while DVC works here, then hold the lock until exit."""
    busy = dvc_activity(root)
    if busy is not None:
        raise RunnerBusy(f"dvc is running in this workspace ({busy}); wait for it to finish (or stop it), "
                         "then start snakemake again. Never run both at once.")
    path = root / SNAKEMAKE_LOCK
    path.parent.mkdir(parents=True, exist_ok=True)
    f = open(path, "a+")
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.seek(0)
        holder = f.read().strip() or "another snakemake"
        f.close()
        raise RunnerBusy(f"{holder} is already running in this workspace ({path})") from None
    f.truncate(0)
    f.write(f"snakemake (pid {os.getpid()})\n")
    f.flush()
    _held.append(f)


def refuse_under_snakemake(root: Path = Path(".")) -> None:
    """A stage script started by DVC stops at once while Snakemake runs in the same workspace."""
    if not os.environ.get("DVC_STAGE"):
        return
    path = root / SNAKEMAKE_LOCK
    if not _flock_free(path):
        holder = path.read_text().strip() or "snakemake"
        raise RunnerBusy(f"{holder} is running in this workspace (it holds {path}); wait for it to finish "
                         "(or stop it), then run dvc again. Never run both at once.")
