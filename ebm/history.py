"""TensorBoard scalars of a run (its history.csv: :mod:`ebm.artifacts`)."""
from __future__ import annotations

from pathlib import Path


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
