"""Stage `evaluate`: accuracy, NLL, ECE + reliability bins, OOD AUROC, PGD robustness, IS/FID; writes metrics.json."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from ebm.artifacts import read_samples, write_metrics, write_reliability, write_scores, write_series
from ebm.checkpoint import load_checkpoint
from ebm.data import load_dataset
from ebm.eval.ood import roc_curve
from ebm.eval.run import evaluate, robustness, sample_quality
from ebm.provenance import pick_device, provenance
from pipeline.common import add_run_flag, base_parser, run, stage_params


def robustness_series(rob: dict | None) -> dict[str, list[dict]]:
    """PGD accuracy against eps, one series per norm (``robustness/<norm>.csv``)."""
    return {norm: [{"eps": eps, "accuracy": acc} for eps, acc in ((rob or {}).get(norm) or {}).items()]
            for norm in ("linf", "l2")}


def roc_series(scores: dict[str, np.ndarray]) -> dict[str, list[dict]]:
    """ROC points per OOD set and score (``roc/<set>-<score>.csv``; in-distribution = the test set)."""
    series = {}
    for key, s_out in scores.items():
        name, score = key.split("/")
        if name != "test":
            fpr, tpr = roc_curve(scores[f"test/{score}"], s_out, max_points=101)
            series[f"{name}-{score}"] = [{"fpr": round(f, 4), "tpr": round(t, 4)} for f, t in zip(fpr, tpr)]
    return series


def main(argv: list[str] | None = None) -> None:
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--samples", default=None, help="samples.npz of the generate stage, for IS/FID")
    p.add_argument("--out", required=True)
    add_run_flag(p)
    args = p.parse_args(argv)
    sp = stage_params(args.params, "evaluate", run=args.run)
    device = pick_device(args.device)
    model, ckpt = load_checkpoint(args.checkpoint, device)
    data = load_dataset(args.data)
    if list(data.classes) != list(ckpt["classes"]):
        from ebm.errors import CheckpointError
        raise CheckpointError(f"{args.checkpoint}: trained on classes {ckpt['classes']}, "
                              f"but {args.data} has {data.classes}")
    cfg = sp.params.evaluate
    samples = read_samples(args.samples) if args.samples is not None else None
    metrics, bins, scores = evaluate(model, data, cfg, device, progress=not args.no_progress)
    metrics["robustness"] = robustness(model, data, cfg, device, progress=not args.no_progress)
    if samples is not None:
        metrics["sample_quality"] = sample_quality(samples, data, cfg, device, progress=not args.no_progress)
    out = Path(args.out)
    meta = ckpt["meta"]
    metrics.update({"objective": meta.get("objective"), "dataset": meta.get("dataset"),
                    "provenance": provenance(params_hash=sp.hash, seed=sp.params.evaluate.seed, device=device,
                                             sections=sp.sections),
                    "train_provenance": {k: meta.get(k) for k in ("params_hash", "git_revision", "seed", "device")}})
    write_scores(out / "scores.npz", scores)
    write_reliability(out / "reliability.csv", bins)
    write_series(out / "robustness", robustness_series(metrics["robustness"]), columns=("eps", "accuracy"))
    write_series(out / "roc", roc_series(scores), columns=("fpr", "tpr"))
    write_metrics(out / "metrics.json", metrics)
    ood = ", ".join(f"{k}: {v['logpx']:.3f}/{v['maxprob']:.3f}" for k, v in metrics["ood_auroc"].items())
    print(f"accuracy {metrics['accuracy']:.4f}  ECE {metrics['ece']:.4f}  AUROC logpx/maxprob {ood}")
    if metrics["robustness"]:
        r = metrics["robustness"]
        print("PGD accuracy  L-inf " + " ".join(f"{e}/255: {a:.3f}" for e, a in r["linf"].items())
              + "  L2 " + " ".join(f"{e}/255: {a:.3f}" for e, a in r["l2"].items()))
    for name, q in (metrics.get("sample_quality") or {}).items():
        print(f"{name} samples: " + (f"IS {q['is']:.2f}  FID {q['fid']:.1f}" if q["is"] is not None
                                     else f"IS/FID not computed: {q['reason']}"))


if __name__ == "__main__":
    sys.exit(run(main))
