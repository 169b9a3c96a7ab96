"""The project's errors: each names the file, key or step and what is wrong with it.

Stage scripts map :class:`EbmError` to one line on stderr and exit code 2 (``pipeline/common.py``);
anything else is a bug and keeps its traceback. Each error also derives from the builtin type that
callers caught before (``ValueError`` or ``RuntimeError``).
"""
from __future__ import annotations


class EbmError(Exception):
    """Bad input or a run that cannot go on; the message is the whole explanation."""


class ParamsError(EbmError, ValueError):
    """``params.yaml`` is malformed; the message names the offending key."""


class WorldSizeError(ParamsError):
    """A setting that cannot be split over the processes of this run, or a resume state from another world size."""


class CheckpointError(EbmError, ValueError):
    """A checkpoint, pretrained model or resume state is missing, corrupt or of the wrong format."""


class DatasetUnavailableError(EbmError, RuntimeError):
    """A dataset's files are missing and cannot be downloaded."""


class DatasetFormatError(EbmError, ValueError):
    """A dataset's files exist but are corrupt, unsafe or of the wrong layout."""


class UsageError(EbmError, ValueError):
    """A command-line flag or environment variable has a value the project cannot use."""


class RunnerBusy(UsageError):
    """The other pipeline runner (DVC or Snakemake) is working in this workspace."""


class WriteError(EbmError):
    """An output could not be written (a full disk, no permission); nothing half-written was left."""

    def __init__(self, path, reason: str):
        from pathlib import Path
        self.path, self.reason = Path(path), reason
        super().__init__(f"writing {path}: {reason}")


class DivergenceError(EbmError, RuntimeError):
    """Training diverged past the retry bound. Carries the step and the offending values."""

    def __init__(self, step: int, values: dict[str, float], reason: str):
        self.step, self.values, self.reason = step, values, reason
        vals = ", ".join(f"{k}={v:.4g}" for k, v in values.items())
        super().__init__(f"training diverged at step {step}: {reason} ({vals})")
