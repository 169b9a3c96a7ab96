"""Does the classifier catch up when the cross-entropy and the rest of the loss have an Adam state each?

    python bench/split_adam.py --data DIR --objectives jem jempp sada_jem hdge_jem --share 0.1 [--set KEY=VALUE ...] --out F.jsonl

An experiment, not a training option. bench/grad_balance.py found that while the p(x) term is on, its
gradient is about as large as the cross-entropy's and nearly orthogonal to it, and that Adam's steps then
follow the cross-entropy's descent about half as closely as softmax's do. One reason can be Adam's
per-coordinate scale: the second moment of the summed gradient grows with the p(x) term's noise, which shrinks
the cross-entropy's share of each step. Here each step splits the gradient of the objective's loss L into

- g_ce = ∇θ w·CE(f(x_lab), y) (the labelled batch's cross-entropy at its weight w, HDGE's ``ce_weight``
  and 1 elsewhere; an extra forward and backward), and
- g_rest = ∇θ L − g_ce (the p(x) term, its ``energy_l2`` penalty, HDGE's contrastive term),

and gives each its own Adam state (the train stage's betas and eps): the step is
Adam_ce(g_ce) · lr + Adam_rest(g_rest) · lr · ``--share``. The cross-entropy's part is then softmax's step;
``--share`` sets how large the rest's is beside it (Adam's step does not scale with its gradient, so
``px_weight`` only weighs the p(x) term against ``energy_l2`` inside the rest). The learning-rate schedule,
``px_start``/``px_until``, the data and the evaluation are the train and evaluate stages' (params.yaml with
``--set``); no roll-back (a divergence ends the row). With SAM (sada_jem), ε(w) comes from the whole
gradient, as in training; then g_ce and g_rest are both taken at w + ε, and SAM's second step (back to w)
is the cross-entropy's Adam step. It assumes what the default params have: Adam without weight decay, and a
model whose second forward of the labelled batch gives the first one's output (no dropout, no batch norm):
it refuses weight decay, dropout and batch norm. Rows go to ``--out`` (JSON lines, as bench/ablate_default.py's,
candidate ``split<share>``) and print as its table.
"""
from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.ablate_default import apply, diverged_row, load_rows, print_table, record, scored_row  # noqa: E402
from ebm.config import load_raw, parse_params  # noqa: E402
from ebm.data import load_dataset  # noqa: E402
from ebm.objectives import REGISTRY  # noqa: E402
from ebm.provenance import pick_device  # noqa: E402
from ebm.sam import SAM  # noqa: E402
from ebm.train import Trainer, divergence, frozen_bn_stats, lr_at  # noqa: E402


def grad(loss: torch.Tensor, ps: list[torch.Tensor]) -> list[torch.Tensor]:
    return [*torch.autograd.grad(loss, ps, allow_unused=True, materialize_grads=True)]


def split(tr: Trainer, loss: torch.Tensor, batch, ps: list[torch.Tensor]) -> tuple[list, list]:
    """(∇θ loss, ∇θ w·CE(f(x_lab), y)) at the current weights; w: the objective's ``ce_weight`` (HDGE), else 1."""
    ce = getattr(tr.objective.cfg, "ce_weight", 1.0) * F.cross_entropy(tr.net(batch.x_lab), batch.y)
    return grad(loss, ps), grad(ce, ps)


def train_split(params, objective: str, data, device: torch.device, share: float) -> tuple[torch.nn.Module, str | None]:
    """Train ``objective`` with the two Adam states; the model and, if it diverged, why."""
    c = params.train.common
    if c.optimizer != "adam" or c.weight_decay != 0 or params.model.dropout != 0 or params.model.norm == "batch":
        raise SystemExit("split_adam.py: needs train.common.optimizer adam and weight_decay 0, model.dropout 0 "
                         "and a model.norm other than batch")
    tr = Trainer(params, objective, data, device)
    ps = [p for p in tr.model.parameters() if p.requires_grad]
    opt_ce, opt_rest = torch.optim.Adam(ps, lr=c.lr), torch.optim.Adam(ps, lr=c.lr)
    sam = SAM(opt_ce, **tr.objective.sam) if tr.objective.uses_sam else None
    while tr.step < c.steps:
        step = tr.step
        lr = lr_at(step, c)
        opt_ce.param_groups[0]["lr"], opt_rest.param_groups[0]["lr"] = lr, lr * share
        tr.objective.set_step(step)
        batch = tr.next_batch()
        tr.net.train()
        loss, logs = tr.objective.loss(tr.net, batch)
        reason = divergence(float(loss.detach()), {k: float(v) for k, v in logs.items()}, c)
        if reason is not None:
            return tr.model, f"step {step}: {reason}"
        if sam is not None:  # SAM: ε from the whole gradient, then both parts of the gradient at w + ε
            for p, g in zip(ps, grad(loss, ps)):
                p.grad = g
            sam.first_step()
            with frozen_bn_stats(tr.model):
                g_loss, g_ce = split(tr, tr.objective.perturbed_loss(tr.net, batch), batch, ps)
            for p, g in zip(ps, g_ce):
                p.grad = g
            sam.second_step()  # back to w, and opt_ce's step
        else:
            g_loss, g_ce = split(tr, loss, batch, ps)
            for p, g in zip(ps, g_ce):
                p.grad = g
            opt_ce.step()
        for p, g_l, g_c in zip(ps, g_loss, g_ce):
            p.grad = g_l - g_c
        opt_rest.step()
        tr.step += 1
    return tr.model, None


def run_one(raw: dict, objective: str, data, device: torch.device, share: float) -> dict:
    raw = copy.deepcopy(raw)
    raw.update(objectives=[objective], datasets=[data.name], runs={})
    params = parse_params(raw)
    t0 = time.perf_counter()
    model, diverged = train_split(params, objective, data, device, share)
    if diverged:
        return diverged_row(time.perf_counter() - t0, 0, diverged)
    return scored_row(model, data, params, device, time.perf_counter() - t0, 0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--data", required=True, help="a dataset folder written by the data stage")
    p.add_argument("--objectives", nargs="+", default=["jem", "jempp", "sada_jem", "hdge_jem"], choices=sorted(REGISTRY))
    p.add_argument("--share", type=float, nargs="+", default=[0.1],
                   help="the rest's Adam step as a fraction of the cross-entropy's (one row per value)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="overrides of params.yaml, e.g. train.common.seed=1 ({o}: the objective's section)")
    p.add_argument("--out", required=True, help="JSON lines: one result per row; rows already there are kept")
    p.add_argument("--device", default="auto")
    args = p.parse_args()
    if any(s < 0 for s in args.share):
        p.error("--share must be >= 0")
    device = pick_device(args.device)
    data = load_dataset(args.data)
    shared = {k: yaml.safe_load(v) for k, v in (kv.split("=", 1) for kv in args.set)}
    tag = " ".join(args.set)
    out = Path(args.out)
    rows, done = load_rows(out)
    for share in args.share:
        cand = f"split{share:g}"
        for obj in args.objectives:
            if (data.name, obj, cand, tag) in done:
                continue
            raw = apply(load_raw(args.params), shared, obj, strict=False)
            record(rows, out, {"dataset": data.name, "objective": obj, "candidate": cand, "set": tag,
                               **run_one(raw, obj, data, device, share)})
    print_table(rows)


if __name__ == "__main__":
    main()
