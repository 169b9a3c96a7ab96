"""Where the time of one training iteration goes, per objective, measured with torch.profiler.

    python bench/profile_step.py --depth 16 --width 2 --sgld-steps 20 --iters 3

Prints a markdown table: per objective, the share of an iteration's CPU time spent in the sampler's
forward and backward passes (SGLD, or JEM++'s proximal SGLD, always through ``ebm.sampling.sgld``), in the
model's other forward and backward passes (cross-entropy, the energies of data and samples, SAM's second
pass, HDGE's contrastive logits), in the optimizer (``Optimizer.step`` and ``zero_grad``), and in
everything else (batch preparation, buffer updates, initialisation of new chains). Each profiled op's
self CPU time counts once, by its enclosing ranges: inside the sampler or not, under the autograd
engine (a backward pass) or not. The seconds per iteration are wall time without the profiler.
Data are random 32×32 images (speed does not depend on content), the rest is params.yaml.
"""
from __future__ import annotations

import functools
import platform
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile, record_function

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import ebm  # noqa: E402
import ebm.sampling  # noqa: E402
from bench.train_speed import bench_parser, params_from_args, random_dataset  # noqa: E402
from ebm.provenance import device_name, pick_device  # noqa: E402
from ebm.train import Trainer, train_step  # noqa: E402

PARTS = ("SGLD fwd", "SGLD bwd", "model fwd", "model bwd", "optimizer", "other")
SAMPLER_RANGE, MODEL_RANGE = "bench::sampler", "bench::model"


def _patch_sampler() -> None:
    """Run every call of ``ebm.sampling.sgld`` inside a named profiler range, wherever it was imported."""
    original = ebm.sampling.sgld

    @functools.wraps(original)
    def traced(*args, **kwargs):
        with record_function(SAMPLER_RANGE):
            return original(*args, **kwargs)

    for module in list(sys.modules.values()):
        name = getattr(module, "__name__", "") or ""
        if (name == "ebm" or name.startswith("ebm.")) and getattr(module, "sgld", None) is original:
            module.sgld = traced


class _Traced(torch.nn.Module):
    """The model, each forward pass inside a named profiler range (the sampler's passes too)."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.inner = model

    def forward(self, *args, **kwargs):
        with record_function(MODEL_RANGE):
            return self.inner(*args, **kwargs)


def _part(event) -> str:
    names, e = [], event
    while e is not None:
        names.append(e.name)
        e = e.cpu_parent
    backward = any(n.startswith("autograd::engine::evaluate_function") for n in names)
    if SAMPLER_RANGE in names:
        return "SGLD bwd" if backward else "SGLD fwd"
    if any(n.startswith(("Optimizer.step", "Optimizer.zero_grad")) for n in names):
        return "optimizer"
    if backward:
        return "model bwd"
    return "model fwd" if MODEL_RANGE in names else "other"


def profile_objective(tr: Trainer, iters: int, warmup: int) -> tuple[dict[str, float], float]:
    """Shares of CPU time by part over ``iters`` profiled iterations, and median wall s/iter unprofiled."""
    model = _Traced(tr.model)
    for _ in range(warmup):
        train_step(model, tr.objective, tr.opt, tr.next_batch())
    walls = []
    for _ in range(iters):
        batch = tr.next_batch()
        t = time.perf_counter()
        train_step(model, tr.objective, tr.opt, batch)
        walls.append(time.perf_counter() - t)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(iters):
            train_step(model, tr.objective, tr.opt, tr.next_batch())
    totals: dict[str, float] = defaultdict(float)
    for event in prof.events():
        totals[_part(event)] += event.self_cpu_time_total
    whole = sum(totals.values()) or 1.0
    return {p: totals[p] / whole for p in PARTS}, sorted(walls)[len(walls) // 2]


def main() -> None:
    p = bench_parser(__doc__.splitlines()[0], iters=3, warmup=1, device="cpu",
                     device_help="the shares count CPU time: profile on the CPU")
    args = p.parse_args()
    device = pick_device(args.device)
    params = params_from_args(args)
    data = random_dataset(params.datasets[0])
    _patch_sampler()
    print(f"device: {device_name(device)} ({torch.get_num_threads()} threads); torch {torch.__version__}; "
          f"python {platform.python_version()}; WRN-{args.depth}-{args.width}, batch {args.batch_size}, "
          f"K={args.sgld_steps} (jem, hdge_jem), {params.train.jem.sample_batch_size} chains; {args.iters} profiled iterations after {args.warmup} warm-up\n")
    print("| objective | s/iter | " + " | ".join(PARTS) + " |")
    print("| --- | --- | " + " | ".join("---" for _ in PARTS) + " |")
    for obj in args.objectives:
        shares, wall = profile_objective(Trainer(params, obj, data, device), args.iters, args.warmup)
        print(f"| {obj} | {wall:.3f} | " + " | ".join(f"{100 * shares[p]:.1f} %" for p in PARTS) + " |", flush=True)


if __name__ == "__main__":
    main()
