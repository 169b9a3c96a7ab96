"""Does the classifier learn while the generative term is on? Per objective and window of steps: the
gradient of the cross-entropy term against the gradient of the rest of the loss, and how much of each
optimizer step goes down the cross-entropy gradient.

    python bench/grad_balance.py --data DIR [--objectives softmax jem ...] [--every 5] [--window 50] [--set KEY=VALUE ...]

Each objective trains as the train stage trains it (``params.yaml`` with the ``--set`` overrides, the same
learning-rate schedule; no roll-back: a divergence ends that objective's rows). Every ``--every`` steps,
on that step's own batch:

- g_ce = ∇θ w·CE(f(x_lab), y), the objective's cross-entropy term (w: HDGE's ``ce_weight``, else 1);
- g_rest = ∇θ (L − w·CE): everything else in the objective's loss at this step (the scheduled p(x) term and
  its ``energy_l2`` penalty, HDGE's contrastive term, a p(x|y) term), with samples drawn as the step draws
  them. It is computed on a copy of the objective's state (replay buffer, HDGE's queue) under a forked RNG,
  so the run's own trajectory is the plain run's (the step then draws its own samples, as in training);
- Δθ, the optimizer's step (SAM: both of its passes), measured on the parameters after it.

Prints four tables, objectives × windows of ``--window`` steps, each cell the mean over the window's
measured steps: |g_rest| / |g_ce|; cos(g_ce, g_rest) (negative: the rest pushes against the
cross-entropy); cos(Δθ, −g_ce) (how far the step follows the cross-entropy's descent direction; a plain
gradient step on CE alone would give 1, Adam's per-coordinate scaling gives less); and CE.
"""
from __future__ import annotations

import argparse
import copy
import math
import platform
import sys
import time
from pathlib import Path

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.ablate_default import apply  # noqa: E402
from ebm.config import load_raw, parse_params  # noqa: E402
from ebm.data import load_dataset  # noqa: E402
from ebm.objectives import REGISTRY  # noqa: E402
from ebm.provenance import device_name, pick_device  # noqa: E402
from ebm.train import Trainer, divergence, lr_at, train_step  # noqa: E402

METRICS = (("|g_rest| / |g_ce|", "ratio"), ("cos(g_ce, g_rest)", "cos_rest"),
           ("cos(Δθ, −g_ce): the step along the CE descent", "cos_step"), ("CE", "ce"))


def flat(tensors) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


def cos(a: torch.Tensor, b: torch.Tensor) -> float:
    na, nb = a.norm(), b.norm()
    return float(a @ b / (na * nb)) if na > 0 and nb > 0 else math.nan


def gradients(tr: Trainer, batch) -> tuple[torch.Tensor, torch.Tensor, float]:
    """(g_ce, g_rest, CE) at the current weights on ``batch``, leaving the run's state untouched."""
    model = tr.model
    params = [p for p in model.parameters() if p.requires_grad]
    buffers = {k: v.clone() for k, v in model.named_buffers()}  # batch norm's running statistics
    cuda = [tr.device] if tr.device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        twin = copy.deepcopy(tr.objective)  # its buffer and queue advance; the run's do not
        model.train()
        ce, rest, logs = twin.terms(tr.net, batch)
    g_ce = flat(torch.autograd.grad(ce, params, retain_graph=True, allow_unused=True, materialize_grads=True))
    g_rest = (torch.zeros_like(g_ce) if rest is None else
              flat(torch.autograd.grad(rest, params, allow_unused=True, materialize_grads=True)))
    with torch.no_grad():
        for k, v in model.named_buffers():
            v.copy_(buffers[k])
    return g_ce, g_rest, float(logs["ce"])


def run(raw: dict, objective: str, data, device: torch.device, every: int) -> tuple[list[dict], str, torch.nn.Module]:
    """Train ``objective``; the measured rows, how the run ended, and the trained model."""
    raw = copy.deepcopy(raw)
    raw.update(objectives=[objective], datasets=[data.name], runs={})
    params = parse_params(raw)
    c = params.train.common
    tr = Trainer(params, objective, data, device)
    rows = []
    while tr.step < c.steps:
        step = tr.step
        for g in tr.opt.param_groups:
            g["lr"] = lr_at(step, c)
        tr.objective.set_step(step)
        batch = tr.next_batch()
        measure = step % every == 0
        if measure:
            g_ce, g_rest, ce = gradients(tr, batch)
            before = flat(p.detach() for p in tr.model.parameters())  # a new tensor (cat)
        loss, logs = train_step(tr.net, tr.objective, tr.opt, batch)
        reason = divergence(float(loss), {k: float(v) for k, v in logs.items()}, c)
        if reason is not None:
            return rows, f"diverged at step {step} ({reason})", tr.model
        if measure:
            delta = flat(p.detach() for p in tr.model.parameters()) - before
            rows.append({"step": step, "ratio": float(g_rest.norm() / g_ce.norm()), "cos_rest": cos(g_ce, g_rest),
                         "cos_step": cos(delta, -g_ce), "ce": ce})
        tr.step += 1
    return rows, f"{c.steps} steps", tr.model


def table(results: dict[str, tuple[list[dict], str]], steps: int, window: int) -> str:
    """The four tables; ``results``: objective -> (measured rows, how its run ended)."""
    starts = list(range(0, steps, window))
    head = [f"{s}–{min(s + window, steps) - 1}" for s in starts]
    out = []
    for title, key in METRICS:
        out += ["", f"{title}, mean over each window's measured steps", "",
                "| objective | " + " | ".join(head) + " | run |", "| --- " * (len(head) + 2) + "|"]
        for name, (rows, ended) in results.items():
            cells = []
            for s in starts:
                vals = [r[key] for r in rows if s <= r["step"] < s + window and math.isfinite(r[key])]
                cells.append(f"{sum(vals) / len(vals):.2f}" if vals else "-")
            out.append(f"| {name} | " + " | ".join(cells) + f" | {ended} |")
    return "\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--data", required=True, help="a dataset folder written by the data stage")
    p.add_argument("--objectives", nargs="+", default=["softmax", "jem", "jempp", "sada_jem", "hdge", "hdge_jem"],
                   choices=sorted(REGISTRY))
    p.add_argument("--every", type=int, default=5, help="measure every this many steps")
    p.add_argument("--window", type=int, default=50, help="steps per table column")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="overrides of params.yaml for every objective, e.g. train.common.seed=1 ({o}: the objective's section)")
    p.add_argument("--device", default="auto")
    args = p.parse_args()
    if args.every < 1 or args.window < 1:
        p.error("--every and --window must be at least 1")
    device = pick_device(args.device)
    data = load_dataset(args.data)
    shared = {k: yaml.safe_load(v) for k, v in (kv.split("=", 1) for kv in args.set)}
    results, steps = {}, 0
    for obj in args.objectives:
        raw = apply(load_raw(args.params), shared, obj, strict=False)
        steps = raw["train"]["common"]["steps"]
        t0 = time.perf_counter()
        results[obj] = run(raw, obj, data, device, args.every)[:2]
        print(f"{obj}: {results[obj][1]}, {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {platform.machine()}, {device_name(device)}, "
          f"torch {torch.__version__} {torch.get_num_threads()} threads; {data.name}, every {args.every} steps"
          + (f"; {' '.join(args.set)}" if args.set else ""))
    print(table(results, steps, args.window))


if __name__ == "__main__":
    main()
