"""Stage `train`: train one objective on one dataset; writes model.pt, history.csv, summary.json."""
from __future__ import annotations

import sys
from pathlib import Path

from ebm.checkpoint import save_checkpoint
from ebm.config import to_dict
from ebm.data import load_dataset
from ebm.history import TensorBoardLogger, write_history
from ebm.io import atomic_write_json
from ebm.provenance import pick_device, provenance
from ebm.train import train
from pipeline.common import base_parser, run, stage_params


def main(argv: list[str] | None = None) -> None:
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--objective", required=True)
    p.add_argument("--dataset", required=True)
    p.add_argument("--data", required=True, help="dataset folder written by the data stage")
    p.add_argument("--out", required=True)
    p.add_argument("--logdir", default=None, help="TensorBoard folder (not a tracked output)")
    p.add_argument("--log-every", type=int, default=10, help="steps between history rows")
    args = p.parse_args(argv)
    sp = stage_params(args.params, "train", objective=args.objective, dataset=args.dataset)
    if args.objective not in sp.params.objectives:
        from ebm.config import ParamsError
        raise ParamsError(f"objective {args.objective!r} is not listed in `objectives` of {args.params}")
    device = pick_device(args.device)
    data = load_dataset(args.data)
    tb = TensorBoardLogger(args.logdir)
    try:
        result = train(sp.params, args.objective, data, device, log_every=args.log_every, on_log=tb,
                       progress=not args.no_progress)
    finally:
        tb.close()
    out = Path(args.out)
    prov = provenance(params_hash=sp.hash, seed=sp.params.train.common.seed, device=device, sections=sp.sections)
    save_checkpoint(out / "model.pt", result.model, model_cfg=sp.params.model, classes=data.classes,
                    objective_state=result.objective.state_dict(),
                    meta={"objective": args.objective, "dataset": args.dataset,
                          "train": to_dict(getattr(sp.params.train, args.objective)), **prov})
    write_history(out / "history.csv", result.history)
    last = result.history[-1]
    atomic_write_json(out / "summary.json", {
        "objective": args.objective, "dataset": args.dataset, "steps": sp.params.train.common.steps,
        "train_seconds": round(result.seconds, 2), "final_loss": last["loss"], "final_batch_acc": last["acc"],
        "provenance": prov})
    print(f"trained {args.objective} on {args.dataset} in {result.seconds:.1f}s → {out}")


if __name__ == "__main__":
    sys.exit(run(main))
