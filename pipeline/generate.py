"""Stage `generate`: SGLD samples (unconditional, class-conditional, replay buffer) from a trained model;
writes samples.npz, grids/*.png and TensorBoard images."""
from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from ebm.checkpoint import load_checkpoint
from ebm.generate import find_buffer, generate, grids
from ebm.io import atomic_dir, atomic_write_bytes
from ebm.provenance import pick_device
from pipeline.common import base_parser, run, stage_params


def _png(img: np.ndarray, scale: int = 2) -> bytes:
    im = Image.fromarray(img)
    im = im.resize((im.width * scale, im.height * scale), Image.NEAREST)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def _tensorboard(logdir: str | None, images: dict[str, np.ndarray]) -> None:
    """Grids as TensorBoard images beside the training scalars of the same run (the folder is not cleared)."""
    if not logdir:
        return
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(logdir) as w:
        for name, img in images.items():
            w.add_image(f"samples/{name}", img, 0, dataformats="HWC")


def main(argv: list[str] | None = None) -> None:
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--logdir", default=None, help="TensorBoard folder for the sample grids")
    args = p.parse_args(argv)
    sp = stage_params(args.params, "generate")
    device = pick_device(args.device)
    model, ckpt = load_checkpoint(args.checkpoint, device)
    n_classes = len(ckpt["classes"])
    samples = generate(model, sp.params.generate, device, n_classes=n_classes,
                       buffer=find_buffer(ckpt["objective_state"]), progress=not args.no_progress)
    images = grids(samples, n_classes)
    out = Path(args.out)
    with atomic_dir(out / "grids") as tmp:
        for name, img in images.items():
            (tmp / f"{name}.png").write_bytes(_png(img))
    buf = io.BytesIO()
    np.savez(buf, **samples, classes=np.array(ckpt["classes"]), params_hash=np.array(sp.hash))
    atomic_write_bytes(out / "samples.npz", buf.getvalue())
    _tensorboard(args.logdir, images)
    meta = ckpt["meta"]
    print(f"{meta.get('objective')} on {meta.get('dataset')}: {', '.join(images)} samples → {out}")


if __name__ == "__main__":
    sys.exit(run(main))
