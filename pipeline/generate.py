"""Stage `generate`: SGLD samples from a trained model; writes samples.npz and grid.png."""
from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from ebm.checkpoint import load_checkpoint
from ebm.generate import generate, image_grid
from ebm.io import atomic_write_bytes
from ebm.provenance import pick_device
from pipeline.common import base_parser, run, stage_params


def main(argv: list[str] | None = None) -> None:
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    sp = stage_params(args.params, "generate")
    device = pick_device(args.device)
    model, ckpt = load_checkpoint(args.checkpoint, device)
    x, pred = generate(model, sp.params.generate, device, progress=not args.no_progress)
    out = Path(args.out)
    buf = io.BytesIO()
    np.savez(buf, x=x, pred=pred, params_hash=np.array(sp.hash))
    atomic_write_bytes(out / "samples.npz", buf.getvalue())
    buf = io.BytesIO()
    grid = Image.fromarray(image_grid(x[:100]))
    grid = grid.resize((grid.width * 2, grid.height * 2), Image.NEAREST)
    grid.save(buf, format="PNG")
    atomic_write_bytes(out / "grid.png", buf.getvalue())
    print(f"wrote {len(x)} samples of {ckpt['meta'].get('objective')} on {ckpt['meta'].get('dataset')} → {out}")


if __name__ == "__main__":
    sys.exit(run(main))
