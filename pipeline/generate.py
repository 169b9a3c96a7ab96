"""Stage `generate`: samples (unconditional, class-conditional, replay buffer) from a trained model with its
own sampler; writes samples.npz, grids/*.png (+ captions.json naming the sampler) and TensorBoard images."""
from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ebm.artifacts import write_captions, write_samples
from ebm.augment import to_tensor
from ebm.checkpoint import load_checkpoint
from ebm.data import load_dataset
from ebm.generate import find_buffer, generate, grids, objective_sampler
from ebm.io import atomic_dir
from ebm.provenance import pick_device
from pipeline.common import add_run_flag, base_parser, run, stage_params


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
    p.add_argument("--data", required=True, help="the dataset folder (JEM++'s informative init is fitted on it)")
    p.add_argument("--out", required=True)
    p.add_argument("--logdir", default=None, help="TensorBoard folder for the sample grids")
    add_run_flag(p)
    args = p.parse_args(argv)
    sp = stage_params(args.params, "generate", run=args.run)
    device = pick_device(args.device)
    model, ckpt = load_checkpoint(args.checkpoint, device)
    n_classes, meta, cfg = len(ckpt["classes"]), ckpt["meta"], sp.params.generate
    data = load_dataset(args.data)
    sampler = objective_sampler(meta["objective"], meta["train"], cfg, device, n_classes=n_classes,
                                data=(to_tensor(data.x_train), torch.from_numpy(data.y_train)))
    samples = generate(model, cfg, device, n_classes=n_classes, sampler=sampler,
                       buffer=find_buffer(ckpt["objective_state"]), progress=not args.no_progress)
    images = grids(samples, n_classes)
    out = Path(args.out)
    how = (f"{cfg.n_samples} chains × {cfg.sgld_steps} steps" if cfg.mode == "fresh" else
           f"persistent buffer of {cfg.n_samples}, {cfg.calls} calls × {cfg.sgld_steps} steps, "
           f"re-init {cfg.reinit_freq:g}")
    captions = {"fresh": f"{sampler.name}; {how}", "cond": f"{sampler.name}; {cfg.sgld_steps} steps on f(x)[y]",
                "buffer": "the replay buffer saved with the model (training's own sampler)"}
    with atomic_dir(out / "grids") as tmp:
        for name, img in images.items():
            (tmp / f"{name}.png").write_bytes(_png(img))
        write_captions(tmp, {k: captions[k] for k in images})
    write_samples(out / "samples.npz", samples, classes=ckpt["classes"], params_hash=sp.hash)
    _tensorboard(args.logdir, images)
    print(f"{meta.get('objective')} on {meta.get('dataset')}: {', '.join(images)} samples → {out}")


if __name__ == "__main__":
    sys.exit(run(main))
