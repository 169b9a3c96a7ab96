"""What every stage script shares: strict params loading, the device flag, and clean failure."""
from __future__ import annotations

import argparse
import os
import sys
import traceback
from dataclasses import dataclass
from typing import Callable

from ebm.config import ParamsError, Params, load_params, load_raw, params_hash
from pipeline.stages import ALL_PARAMS, STAGES, fill


@dataclass
class StageParams:
    params: Params
    sections: list[str]  # the sections this stage reads (from pipeline/stages.py)
    hash: str  # sha256 of exactly those sections


def stage_params(path: str, stage: str, **wildcards: str) -> StageParams:
    """Validate the whole file (a typo anywhere stops every stage), then hash this stage's sections."""
    params = load_params(path)
    raw = load_raw(path)
    sections = [fill(s, **wildcards) for s in STAGES[stage].params]
    if sections == [ALL_PARAMS]:
        sections = sorted(raw)
    return StageParams(params, sections, params_hash(raw, sections))


def base_parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    p.add_argument("--device", default=os.environ.get("EBM_DEVICE", "auto"),
                   help="auto (GPU if any, else CPU), cpu, cuda, cuda:N; env EBM_DEVICE (default auto)")
    p.add_argument("--no-progress", action="store_true", default=bool(os.environ.get("EBM_NO_PROGRESS")),
                   help="hide progress bars (env EBM_NO_PROGRESS)")
    return p


# Errors that name the problem; anything else is a bug and keeps its traceback.
def _expected_errors() -> tuple[type[BaseException], ...]:
    from ebm.checkpoint import CheckpointError
    from ebm.data.sources import DatasetFormatError, DatasetUnavailableError

    errs: list[type[BaseException]] = [ParamsError, DatasetUnavailableError, DatasetFormatError, CheckpointError]
    try:
        from ebm.train import DivergenceError
        errs.append(DivergenceError)
    except ImportError:  # pragma: no cover - ebm.train imports torch, always present
        pass
    return tuple(errs)


def run(main: Callable[[list[str] | None], None], argv: list[str] | None = None) -> int:
    """Run a stage's main; print a one-paragraph error and return non-zero on a known failure."""
    try:
        main(argv)
        return 0
    except _expected_errors() as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception:
        traceback.print_exc()
        return 1
