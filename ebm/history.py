"""Training history as CSV (for `dvc plots`) and TensorBoard scalars."""
from __future__ import annotations

import csv
import io
from pathlib import Path

from ebm.io import atomic_write_text


def history_csv(rows: list[dict]) -> str:
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    return buf.getvalue()


def write_history(path: str | Path, rows: list[dict]) -> None:
    atomic_write_text(path, history_csv(rows))


def read_history(path: str | Path) -> list[dict]:
    with open(path, newline="") as f:
        return [{k: (float(v) if v not in ("", None) else None) for k, v in r.items()} for r in csv.DictReader(f)]


class TensorBoardLogger:
    """Scalars per logged step under ``logdir``. A fresh run deletes the event files a writer left there
    before (``events.out.tfevents.*``) and nothing else: ``--logdir`` may point at a user's own folder."""

    def __init__(self, logdir: str | Path | None, fresh: bool = True):
        self.writer = None
        if logdir is None:
            return
        from torch.utils.tensorboard import SummaryWriter

        if fresh and Path(logdir).is_dir():
            for old in Path(logdir).glob("events.out.tfevents.*"):
                old.unlink()
        self.writer = SummaryWriter(str(logdir))

    def __call__(self, row: dict) -> None:
        if self.writer is None:
            return
        step = int(row["step"])
        for k, v in row.items():
            if k != "step" and isinstance(v, (int, float)):
                self.writer.add_scalar(f"train/{k}", v, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
