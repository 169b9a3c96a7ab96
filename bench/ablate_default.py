"""Ablation of the default run's training recipe: train each candidate, evaluate it, print one table.

    python -m pipeline.data --dataset shapes --out /tmp/abl/shapes        # once per dataset
    python bench/ablate_default.py --data /tmp/abl/shapes --objectives softmax jem \\
        --candidates base px0.3 --out /tmp/abl/shapes.jsonl

Each candidate is a set of overrides of ``--params`` (dotted keys; ``{o}`` stands for the objective's own
``train.<objective>`` section, and a key that section lacks leaves that objective out of the candidate).
Every (objective, candidate) trains with the stage's own code (``ebm.train.train``) and is evaluated with
the evaluate stage's code (``ebm.eval.run.evaluate``: accuracy, ECE, OOD AUROC; no PGD). Results are appended
to ``--out`` (JSON lines), so an interrupted ablation resumes and runs on two datasets merge; the table is
printed from that file. AUROC columns: the hybrids' two generative scores (``logpx`` and ``pxgrad``, for
JEM, JEM++, SADA-JEM and HDGE+JEM) against each OOD set, and ``logpx`` / ``maxprob`` / ``pxgrad`` for softmax
and HDGE (no sampler) for comparison. The last column holds each row against issue 17's bar, set by
softmax's ``base`` row of the same dataset and ``--set`` where the file has one: accuracy within 3 points,
a lower ECE, and on every OOD set a generative score above softmax's same score. One seed: read
differences of a point or two as noise.
"""
from __future__ import annotations

import argparse
import copy
import json
import platform
import sys
import time
from pathlib import Path

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ebm.config import load_raw, parse_params  # noqa: E402
from ebm.data import load_dataset  # noqa: E402
from ebm.errors import DivergenceError, ParamsError  # noqa: E402
from ebm.objectives import REGISTRY  # noqa: E402
from ebm.eval.run import evaluate  # noqa: E402
from ebm.provenance import pick_device  # noqa: E402
from ebm.report.versus import GENERATIVE, versus_softmax  # noqa: E402
from ebm.train import train  # noqa: E402


# name -> (overrides, what it tests). {o}: the objective's own section.
CANDIDATES: dict[str, tuple[dict, str]] = {
    "base": ({}, "params.yaml as it is"),
    "buf500": ({"train.{o}.buffer_size": 500}, "smaller replay buffer: older chains"),
    "px0.3": ({"train.{o}.px_weight": 0.3}, "p(x) weight 0.3"),
    "px0.1": ({"train.{o}.px_weight": 0.1}, "p(x) weight 0.1"),
    "px0": ({"train.{o}.px_weight": 0.0}, "no p(x) term (sada_jem: its classifier alone, with SAM; hdge_jem: hdge)"),
    # the p(x) schedule is in fractions of train.common.steps; the names give the steps of the default 300
    "ramp150": ({"train.{o}.px_start": 0.0, "train.{o}.px_ramp": 0.5}, "p(x) weight rises from 0 over half the steps (150 of 300)"),
    "late150": ({"train.{o}.px_start": 0.5, "train.{o}.px_ramp": 1 / 6}, "classifier only for half the steps (150 of 300), then p(x) up over 1/6 (50), to px_until"),
    "late100": ({"train.{o}.px_start": 1 / 3, "train.{o}.px_ramp": 1 / 6}, "classifier only for a third of the steps (100 of 300), then p(x) up over 1/6 (50), to px_until"),
    "start60": ({"train.{o}.px_start": 0.2}, "classifier only for the first 20 % of the steps (60 of 300: the warm-up and 10 more), then p(x) up to px_until"),
    "until1": ({"train.{o}.px_until": 1.0}, "p(x) term to the last step (the papers; the default before f010db0)"),
    "until0.8": ({"train.{o}.px_until": 0.8}, "p(x) term off for the last 20 % of the steps (the classifier alone)"),
    "until0.67": ({"train.{o}.px_until": 2 / 3}, "p(x) term off for the last third of the steps"),
    "until0.5": ({"train.{o}.px_until": 0.5}, "p(x) term off for the second half of the steps"),
    "l2_0": ({"train.{o}.energy_l2": 0.0}, "no energy penalty (papers)"),
    "l2_0.01": ({"train.{o}.energy_l2": 0.01}, "energy penalty 0.01"),
    "inf": ({"train.{o}.init": "informative"}, "informative (class-Gaussian) init"),
    "sgld0.5": ({"train.{o}.sgld_lr": 0.5}, "SGLD step 0.5"),
    "noise0": ({"train.{o}.sgld_std": 0.0}, "no SGLD noise"),
    "k10": ({"train.{o}.sgld_steps": 10}, "10 SGLD steps per iteration: older chains, twice the sampler's cost"),
    "lr2e-3": ({"train.common.lr": 2.0e-3}, "peak lr 2e-3"),
    "nodecay": ({"train.common.decay_at": []}, "constant lr after warm-up"),
    "split0": ({"train.{o}.split_optimizer": 0.0}, "one optimizer for the whole loss (the papers; jem's and hdge_jem's default before aff189b)"),
    "split0.1": ({"train.{o}.split_optimizer": 0.1}, "the CE and the rest of the loss an optimizer state each, the rest's lr 0.1 × the CE's"),
    "split0.3": ({"train.{o}.split_optimizer": 0.3}, "the same, the rest's lr 0.3 × the CE's"),
    "split0.05": ({"train.{o}.split_optimizer": 0.05}, "the same, the rest's lr 0.05 × the CE's"),
    "rho0.01": ({"train.{o}.rho": 0.01}, "SAM radius 0.01 (sada_jem only; its default 0.05)"),
    "rho0.1": ({"train.{o}.rho": 0.1}, "SAM radius 0.1 (sada_jem only)"),
    "asam2": ({"train.{o}.rho": 2.0, "train.{o}.adaptive": True}, "adaptive SAM at radius 2 (SADA-JEM's released code)"),
    "pxy0.3": ({"train.{o}.pxy_weight": 0.3}, "p(x|y) term (JEM code's p_x_y_weight) at 0.3: class-conditional chains"),
}


def apply(raw: dict, overrides: dict, objective: str, *, strict: bool = True) -> dict | None:
    """``raw`` with ``overrides``; a key ``raw`` lacks makes it None (strict: the candidate does not apply
    to this objective) or is skipped (not strict: a shared override of sections some objectives lack)."""
    raw = copy.deepcopy(raw)
    for dotted, value in overrides.items():
        keys = dotted.replace("{o}", objective).split(".")
        node = raw
        for k in keys[:-1]:
            node = node.get(k) if isinstance(node, dict) else None
        if not isinstance(node, dict) or keys[-1] not in node:
            if strict:
                return None
            continue
        node[keys[-1]] = value
    return raw


def candidate(name: str) -> str:
    bad = [c for c in name.split("+") if c not in CANDIDATES]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown candidate {bad[0]!r} (known: {', '.join(CANDIDATES)})")
    return name


def overrides(name: str) -> dict:
    """A candidate's overrides; ``a+b`` applies both."""
    return {k: v for c in name.split("+") for k, v in CANDIDATES[c][0].items()}


def gen_scores(objective: str) -> list[str]:
    """The AUROC columns of ``objective``'s rows: for the sampling objectives their two generative scores
    (the papers use either); for those without a sampler (softmax, hdge) ``maxprob`` too, the classifier's
    own score."""
    return list(GENERATIVE) if REGISTRY[objective].trains_sampler else ["logpx", "maxprob", "pxgrad"]


def diverged_row(seconds: float, retries: int, why: str) -> dict:
    """The row of a run that diverged: a row of its own, the candidate is unstable at this budget."""
    return {"accuracy": float("nan"), "ece": float("nan"), "ood": {}, "seconds": seconds, "retries": retries,
            "diverged": why}


def scored_row(model, data, params, device, seconds: float, retries: int) -> dict:
    """The row of a trained model: the evaluate stage's accuracy, ECE, NLL and OOD AUROC, and mean confidence."""
    metrics, _, scores = evaluate(model, data, params.evaluate, device, progress=False)
    return {"accuracy": 100 * metrics["accuracy"], "ece": 100 * metrics["ece"], "ood": metrics["ood_auroc"],
            "confidence": 100 * float(scores["test/maxprob"].mean()), "nll": metrics["nll"],
            "seconds": seconds, "retries": retries}


def run_one(raw: dict, objective: str, data, device) -> dict:
    raw["objectives"], raw["datasets"], raw["runs"] = [objective], [data.name], {}
    params = parse_params(raw)
    t0 = time.perf_counter()
    try:
        result = train(params, objective, data, device, progress=False)
    except DivergenceError as e:
        return diverged_row(time.perf_counter() - t0, params.train.common.max_retries, str(e))
    return scored_row(result.model, data, params, device, time.perf_counter() - t0, result.retries)


def load_rows(out: Path) -> tuple[list[dict], set[tuple]]:
    """The rows already in ``out`` (JSON lines), and their identities (dataset, objective, candidate, set)."""
    rows = [json.loads(line) for line in out.read_text().splitlines()] if out.is_file() else []
    return rows, {(r["dataset"], r["objective"], r["candidate"], r.get("set", "")) for r in rows}


def record(rows: list[dict], out: Path, r: dict) -> None:
    """Report row ``r`` on stderr, keep it, and append it to ``out`` (so an interrupted run resumes)."""
    print(f"{r['dataset']} {r['objective']} {r['candidate']}: acc {r['accuracy']:.1f} ece {r['ece']:.2f} "
          f"{r['seconds']:.0f} s", file=sys.stderr, flush=True)
    rows.append(r)
    with out.open("a") as f:
        f.write(json.dumps(r) + "\n")


def print_table(rows: list[dict]) -> None:
    print(f"# {platform.node() or 'host'}: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {time.strftime('%Y-%m-%d')}")
    print(table(rows))


def bar(r: dict, ref: dict | None) -> str:
    """Row ``r`` against issue 17's bar, set by ``ref`` (softmax's base row of the same dataset and
    overrides), as the report's seed table judges it (:func:`ebm.report.versus.versus_softmax`): accuracy
    within 3 points, ECE lower, and on every OOD set of both rows a generative score (``logpx`` or
    ``pxgrad``, not ``maxprob``) above ref's same score. ``-`` for softmax itself, ``diverged`` for a run that diverged, and
    ``no reference`` where the file has no softmax base row that finished for that dataset and overrides."""
    if r["objective"] == "softmax":
        return "-"
    if r.get("diverged"):
        return "diverged"
    if ref is None:
        return "no reference"
    marks = versus_softmax(r, ref)
    return " ".join(f"{k} {'✓' if ok else '✗'}" for k, ok in marks.items())


def table(rows: list[dict]) -> str:
    sets = sorted({s for r in rows for s in r["ood"]})
    refs = {(r["dataset"], r.get("set", "")): r for r in rows
            if r["objective"] == "softmax" and r["candidate"] == "base" and not r.get("diverged")}
    head = (["dataset", "overrides", "objective", "candidate", "acc %", "ECE %", "mean conf. %"]
            + [f"AUROC {s}" for s in sets] + ["train s", "bar (vs softmax)"])
    out = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for r in rows:
        scores = gen_scores(r["objective"])
        au = [" / ".join(f"{r['ood'][s][k]:.3f}" for k in scores) + f" ({'/'.join(scores)})" if s in r["ood"]
              else "-" for s in sets]
        retry = " (diverged)" if r.get("diverged") else f" ({r['retries']} roll-backs)" if r["retries"] else ""
        conf = f"{r['confidence']:.1f}" if "confidence" in r else "-"
        out.append(f"| {r['dataset']} | {r.get('set') or '-'} | {r['objective']} | {r['candidate']} | "
                   f"{r['accuracy']:.1f}{retry} | {r['ece']:.2f} | {conf} | " + " | ".join(au) + f" | {r['seconds']:.0f} | "
                   f"{bar(r, refs.get((r['dataset'], r.get('set', ''))))} |")
    return "\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--data", nargs="+", required=True, help="dataset folders written by the data stage")
    p.add_argument("--objectives", nargs="+", default=["softmax", "jem", "jempp", "sada_jem", "hdge", "hdge_jem"])
    p.add_argument("--candidates", nargs="+", default=list(CANDIDATES), type=candidate,
                   help=f"names of CANDIDATES ({', '.join(CANDIDATES)}), or several joined with + (all at once)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="overrides of every run, e.g. train.common.steps=400 (YAML values; {o} as above); "
                        "recorded in each row, and part of its identity in --out")
    p.add_argument("--out", required=True, help="JSON lines: one result per row; rows already there are kept")
    p.add_argument("--device", default="auto")
    args = p.parse_args()
    device = pick_device(args.device)
    shared = {k: yaml.safe_load(v) for k, v in (kv.split("=", 1) for kv in args.set)}
    tag = " ".join(args.set)
    out = Path(args.out)
    rows, done = load_rows(out)
    for folder in args.data:
        data = load_dataset(folder)
        for cand in args.candidates:
            for obj in args.objectives:
                if (data.name, obj, cand, tag) in done or (not REGISTRY[obj].trains_sampler and cand != "base"):
                    continue  # the classifier-only objectives are the reference: base only
                raw = apply(apply(load_raw(args.params), shared, obj, strict=False), overrides(cand), obj)
                if raw is None:
                    print(f"skip {obj} {cand}: a key it overrides is not in train.{obj}", file=sys.stderr)
                    continue
                try:
                    result = run_one(raw, obj, data, device)
                except ParamsError as e:  # e.g. pxy_weight > 0 for sada_jem, whose params reject it
                    print(f"skip {obj} {cand}: {e}", file=sys.stderr)
                    continue
                record(rows, out, {"dataset": data.name, "objective": obj, "candidate": cand, "set": tag, **result})
    print_table(rows)


if __name__ == "__main__":
    main()
