"""What every stage script shares: strict params loading, the device flag, and clean failure."""
from __future__ import annotations

import argparse
import hashlib
import re
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ebm import env
from ebm.config import Params, ParamsError, load_params, load_raw, load_run_params, params_hash
from ebm.errors import EbmError
from pipeline.runlock import refuse_under_snakemake
from pipeline.stages import STAGES, sections_of


@dataclass
class StageParams:
    params: Params
    sections: list[str]  # the sections this stage reads (from pipeline/stages.py)
    hash: str  # sha256 of exactly those sections


def stage_params(path: str, stage: str, run: str | None = None, **wildcards: str) -> StageParams:
    """Validate the whole file (a typo anywhere stops every stage), then hash this stage's sections.
    ``run``: a named run (``runs.<run>``), whose params are the shared ones with its overrides merged in."""
    params = load_params(path)
    raw = load_raw(path)
    if run is not None:
        params = load_run_params(path, run)
        for key, given in wildcards.items():
            own = getattr(params, key + "s")[0]  # the run's objective / dataset
            if given != own:
                raise ParamsError(f"{path}: runs.{run}.{key} is {own!r}, not {given!r}")
    sections = sections_of(STAGES[stage], raw, **wildcards, **({"run": run} if run is not None else {}))
    return StageParams(params, sections, params_hash(raw, sections))


def add_run_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", default=None, help="a named run of params.yaml (runs.<name>); none: a run of the grid")


DEVICES = "auto, cpu, cuda, cuda:N"


class Parser(argparse.ArgumentParser):
    """Flags whose default comes from an ``EBM_*`` variable default to None and are resolved after
    parsing (``resolve``), so a bad variable is one clear error from the stage and never breaks
    ``--help``. A bad flag is one line too, not the usage block."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.resolvers: dict[str, Callable[[Any], Any]] = {}

    def resolve(self, dest: str, resolver: Callable[[Any], Any]) -> None:
        """After parsing, ``args.<dest> = resolver(the parsed value, None when the flag was not given)``."""
        self.resolvers[dest] = resolver

    def env_flag(self, dest: str, var: str) -> None:
        """A ``store_true`` flag (default None) that the on/off variable ``var`` also turns on."""
        self.resolve(dest, lambda given: True if given else env.flag(var))

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")

    def parse_args(self, args=None, namespace=None):  # type: ignore[override]
        ns = super().parse_args(args, namespace)
        for dest, resolver in self.resolvers.items():
            setattr(ns, dest, resolver(getattr(ns, dest)))
        return ns


def positive_int(what: str) -> Callable[[str], int]:
    """An argparse ``type`` accepting integers ≥ 1 only."""
    def parse(text: str) -> int:
        try:
            return env.positive_int(text, what)
        except env.UsageError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    return parse


def device_name(flag: str | None) -> str:
    """``--device`` if given, else ``EBM_DEVICE``, else auto; checked against the valid values."""
    what, name = ("--device", flag) if flag is not None else ("environment variable EBM_DEVICE",
                                                              env.text_var("EBM_DEVICE", "auto"))
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", name):
        raise env.UsageError(f"{what}={name!r}: expected one of {DEVICES}")
    return name


def code_digest(stage: str) -> str:
    """sha256 over the code files a stage depends on (names and contents): a resume state or a result
    made by other code is not this run's."""
    from ebm.io import sha256_file

    root = Path(__file__).resolve().parent.parent
    h = hashlib.sha256()
    for dep in STAGES[stage].code():
        h.update(f"{dep} {sha256_file(root / dep)}\n".encode())
    return h.hexdigest()


def base_parser(description: str) -> Parser:
    p = Parser(description=description)
    p.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    p.add_argument("--device", default=None,
                   help=f"{DEVICES} (auto: GPU if any, else CPU); env EBM_DEVICE (default auto)")
    p.add_argument("--no-progress", action="store_true", default=None,
                   help="hide progress bars (env EBM_NO_PROGRESS=1)")
    p.env_flag("no_progress", "EBM_NO_PROGRESS")
    p.resolve("device", device_name)
    return p


def run(main: Callable[[list[str] | None], None], argv: list[str] | None = None) -> int:
    """Run a stage's main. A project error (ebm/errors.py: it names the problem) prints one paragraph
    and returns 2; anything else is a bug and keeps its traceback."""
    try:
        refuse_under_snakemake()
        main(argv)
        return 0
    except EbmError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception:
        traceback.print_exc()
        return 1
