"""Stage `data`: make or read one dataset and write it as checksummed arrays (data/datasets/<name>)."""
from __future__ import annotations

import sys
from pathlib import Path

from ebm.data.store import build_dataset, write_dataset
from ebm.provenance import git_revision
from pipeline.common import base_parser, run, stage_params


def main(argv: list[str] | None = None) -> None:
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--dataset", required=True)
    p.add_argument("--raw-root", default="data/raw", help="folder of raw downloads / local copies, one per dataset")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    sp = stage_params(args.params, "data", dataset=args.dataset)
    if args.dataset not in sp.params.data:
        from ebm.errors import ParamsError
        raise ParamsError(f"{args.params}: no section data.{args.dataset}")
    cfg = sp.params.data[args.dataset]
    arrays, raw_files = build_dataset(args.dataset, cfg, Path(args.raw_root))
    manifest = write_dataset(arrays, Path(args.out), {
        "source": cfg.source, "raw_files_sha256": raw_files, "params_hash": sp.hash,
        "params_sections": sp.sections, "git_revision": git_revision()})
    print(f"wrote {args.out}: {manifest['counts']}")


if __name__ == "__main__":
    sys.exit(run(main))
