"""Stage `train`: train one objective on one dataset; writes model.pt, history.csv, summary.json.

Runs under ``torchrun --nproc-per-node N`` as well (DDP, see ebm/distributed.py): rank 0 alone writes the
outputs and TensorBoard events, every rank its own resume state. ``EBM_NPROC=N`` relaunches this command
under ``torchrun --standalone --nproc-per-node N`` (for `dvc repro`, which has no resources)."""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

from ebm import artifacts, env
from ebm.checkpoint import ResumeStore, save_checkpoint
from ebm.config import to_dict
from ebm.data import load_dataset
from ebm.distributed import joined, relaunch_under_torchrun
from ebm.history import TensorBoardLogger
from ebm.io import sha256_file
from ebm.provenance import pick_device, provenance
from ebm.rank_resume import RankResumeStore, check_world
from ebm.train import train
from pipeline.common import add_run_flag, base_parser, code_digest, positive_int, run, stage_params


def main(argv: list[str] | None = None) -> None:
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--objective", required=True)
    p.add_argument("--dataset", required=True)
    p.add_argument("--data", required=True, help="dataset folder written by the data stage")
    p.add_argument("--out", required=True)
    p.add_argument("--logdir", default=None, help="TensorBoard folder (not a tracked output)")
    p.add_argument("--log-every", type=positive_int("--log-every"), default=10, help="steps between history rows")
    p.add_argument("--resume-dir", default=None,
                   help="folder for the resume state (kept by DVC, not a Snakemake output); none: no resume")
    p.add_argument("--checkpoint-every", type=positive_int("--checkpoint-every"), default=None,
                   help="steps between resume states / roll-back points (env EBM_CHECKPOINT_EVERY, default 100)")
    p.resolve("checkpoint_every", lambda given: given or env.int_var("EBM_CHECKPOINT_EVERY", 100))
    p.add_argument("--bf16", action="store_true", default=None,
                   help="bf16 autocast for the forward passes (env EBM_BF16=1)")
    p.env_flag("bf16", "EBM_BF16")
    p.add_argument("--channels-last", action="store_true", default=None,
                   help="channels_last memory format (env EBM_CHANNELS_LAST=1)")
    p.env_flag("channels_last", "EBM_CHANNELS_LAST")
    add_run_flag(p)
    args = p.parse_args(argv)
    relaunch_under_torchrun("pipeline.train", sys.argv[1:] if argv is None else argv)
    sp = stage_params(args.params, "train", run=args.run, objective=args.objective, dataset=args.dataset)
    if args.objective not in sp.params.objectives:
        from ebm.errors import ParamsError
        raise ParamsError(f"objective {args.objective!r} is not listed in `objectives` of {args.params}")
    data = load_dataset(args.data)
    # what the result depends on besides the params: the dataset's files and the stage's code
    inputs = {"dataset_manifest_sha256": sha256_file(Path(args.data) / "manifest.json"),
              "code_sha256": code_digest("train")}
    stamp = hashlib.sha256(json.dumps({"params_hash": sp.hash, **inputs}, sort_keys=True).encode()).hexdigest()
    with joined(pick_device(args.device)) as (world, device):
        _train_and_write(args, sp, data, world, device, stamp, inputs)


def _train_and_write(args, sp, data, world, device, stamp: str, inputs: dict) -> None:
    """``stamp``: the resume state's key (params, dataset and code); ``inputs``: provenance beside the params."""
    resume = None
    if args.resume_dir:
        check_world(args.resume_dir, world)
        resume = (RankResumeStore(args.resume_dir, stamp, world) if world.distributed
                  else ResumeStore(args.resume_dir, stamp))
    resuming = resume is not None and (resume.exists() if world.distributed else resume.path.is_file())
    if resuming and world.main:
        print(f"resume: found a saved state in {args.resume_dir}")
    tb = TensorBoardLogger(args.logdir if world.main else None, fresh=not resuming)
    try:
        result = train(sp.params, args.objective, data, device, log_every=args.log_every, on_log=tb,
                       progress=not args.no_progress and world.main, resume=resume,
                       checkpoint_every=args.checkpoint_every, bf16=args.bf16, channels_last=args.channels_last,
                       world=world)
    finally:
        tb.close()
    if world.main:
        _write_outputs(args, sp, data, device, world, result, inputs)
    if resume is not None:
        resume.finish()
    if world.main:
        print(f"trained {args.objective} on {args.dataset} in {result.seconds:.1f}s → {args.out}"
              + (f" on {world.size} processes" if world.distributed else "")
              + (f" (resumed from step {result.resumed_from})" if result.resumed_from is not None else "")
              + (f" ({result.retries} roll-backs after divergence)" if result.retries else ""))


def _write_outputs(args, sp, data, device, world, result, inputs: dict) -> None:
    out = Path(args.out)
    prov = provenance(params_hash=sp.hash, seed=sp.params.train.common.seed, device=device, sections=sp.sections,
                      bf16=args.bf16, channels_last=args.channels_last, world_size=world.size, **inputs)
    save_checkpoint(out / "model.pt", result.model, model_cfg=sp.params.model, classes=data.classes,
                    objective_state=result.objective.state_dict(),
                    meta={"objective": args.objective, "dataset": args.dataset,
                          "train": to_dict(getattr(sp.params.train, args.objective)), **prov})
    artifacts.write_history(out / "history.csv", result.history)
    last = result.history[-1]
    artifacts.write_metrics(out / "summary.json", {
        "objective": args.objective, "dataset": args.dataset, "steps": sp.params.train.common.steps,
        "train_seconds": round(result.seconds, 2), "final_loss": last["loss"], "final_batch_acc": last["acc"],
        "divergence_retries": result.retries, "resumed_from_step": result.resumed_from,
        "params": {"model": to_dict(sp.params.model), "train.common": to_dict(sp.params.train.common),
                   f"train.{args.objective}": to_dict(getattr(sp.params.train, args.objective))},
        "provenance": prov})


if __name__ == "__main__":
    sys.exit(run(main))
