"""Stage `pretrain`: hybrid generative-contrastive pretraining, one model per loss weight; writes
models/w<weight>.pt, history.csv and metrics.json (linear probe, bits/dim, OOD AUROC, corruption accuracy).

Runs under ``torchrun --nproc-per-node N`` as well (DDP; ``EBM_NPROC=N`` relaunches it so): every rank
trains, rank 0 alone evaluates and writes."""
from __future__ import annotations

import contextlib
import sys
from pathlib import Path

from ebm.artifacts import write_metrics, write_series
from ebm.data import load_dataset
from ebm.distributed import joined, relaunch_under_torchrun
from ebm.history import TensorBoardLogger
from ebm.io import atomic_dir, remove_outputs
from ebm.pretrain.evaluate import corruption_set, evaluate_pretrained
from ebm.pretrain.train import pretrain_one, save_pretrained
from ebm.provenance import pick_device, provenance
from pipeline.common import base_parser, run, stage_params


def main(argv: list[str] | None = None) -> None:
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--dataset", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--logdir", default=None, help="TensorBoard folder (one sub-folder per weight)")
    args = p.parse_args(argv)
    relaunch_under_torchrun("pipeline.pretrain", sys.argv[1:] if argv is None else argv)
    sp = stage_params(args.params, "pretrain")
    data = load_dataset(args.data)
    with joined(pick_device(args.device)) as (world, device):
        _pretrain_all(args, sp, data, world, device)


def _pretrain_all(args, sp, data, world, device) -> None:
    cfg, out = sp.params.pretrain, Path(args.out)
    if world.main:
        remove_outputs(out / "metrics.json", out / "info.json")  # a failed run must not leave old metrics looking current
    prov = provenance(params_hash=sp.hash, seed=cfg.seed, device=device, sections=sp.sections, world_size=world.size)
    runs, history = {}, {}
    corrupted = corruption_set(data.x_test, cfg)
    with atomic_dir(out / "models") if world.main else contextlib.nullcontext() as models:
        for w in cfg.contrastive_weights:
            tb = TensorBoardLogger(f"{args.logdir}/w{w:g}" if args.logdir and world.main else None)
            try:
                model, rows, seconds = pretrain_one(data.x_train, cfg, w, device, log=tb, world=world,
                                                    progress=not args.no_progress and world.main)
            finally:
                tb.close()
            if not world.main:
                continue
            history[f"w{w:g}"] = rows
            save_pretrained(models / f"w{w:g}.pt", model, cfg, w, {"dataset": args.dataset, **prov})
            m = evaluate_pretrained(model, data, cfg, device, corrupted, progress=not args.no_progress)
            runs[f"w{w:g}"] = {"contrastive_weight": w, **m, "train_seconds": round(seconds, 2), "steps": cfg.steps}
            ood = ", ".join(f"{k} {v['bpd']:.3f}/{v['knn']:.3f}" for k, v in m["ood_auroc"].items())
            print(f"w={w:g}: linear probe {m['linear_probe_accuracy']:.4f}  test {m['test_bpd']:.3f} bits/dim  "
                  f"corrupted {m['corruption_accuracy']['mean']}  AUROC bpd/knn {ood}  ({seconds:.0f}s)")
    if world.main:
        write_series(out / "history", history)
        write_metrics(out / "metrics.json", {"dataset": args.dataset, "runs": runs, "provenance": prov})


if __name__ == "__main__":
    sys.exit(run(main))
