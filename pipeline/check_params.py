"""Stage `params`: validate the whole params.yaml before any other stage runs.

It tracks every key, so an added typo (e.g. from ``dvc exp run -S``) reruns it and stops the pipeline
with an error naming the key. Its output does not depend on the values, so downstream stages are not
rerun by an unrelated change.
"""
from __future__ import annotations

import sys
from pathlib import Path

from ebm.config import load_params, load_raw
from ebm.io import atomic_write_text
from pipeline.common import base_parser, run
from pipeline.stages import write_params_files


def main(argv: list[str] | None = None) -> None:
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    load_params(args.params)
    out = Path(args.out)
    write_params_files(load_raw(args.params), str(out.parent / "hash"))  # data/params/hash beside the marker
    text = "params.yaml passed strict validation (pipeline/check_params.py)\n"
    if not (out.is_file() and out.read_text() == text):  # unchanged: keep its mtime for Snakemake
        atomic_write_text(out, text)


if __name__ == "__main__":
    sys.exit(run(main))
