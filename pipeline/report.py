"""Stage `report`: data/report/index.html and report.md over every run (the grid's and the named ones)."""
from __future__ import annotations

import sys
from pathlib import Path

from ebm.config import load_raw, run_items
from ebm.io import atomic_dir
from ebm.provenance import git_revision
from ebm.report import write_report
from ebm.report.seeds import seed_variant
from pipeline.common import base_parser, run, stage_params
from pipeline.stages import report_inputs


def report_items(raw: dict) -> list[dict]:
    """Every run of the params document ``raw``, with its variant, by which the report groups seed replicates."""
    return [{**it, "variant": seed_variant(raw, it["run"])} for it in run_items(raw)]


def main(argv: list[str] | None = None) -> None:
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    sp = stage_params(args.params, "report")
    with atomic_dir(args.out) as tmp:
        info = write_report(Path("."), tmp, report_items(load_raw(args.params)), sp.params.datasets,
                            inputs=report_inputs(),
                            provenance={"params_hash": sp.hash, "git_revision": git_revision(),
                                        "objectives": sp.params.objectives, "datasets": sp.params.datasets})
    print(f"report: {Path(args.out) / 'index.html'} ({info['runs']} runs"
          + (f", missing: {', '.join(info['missing'])})" if info["missing"] else ")"))


if __name__ == "__main__":
    sys.exit(run(main))
