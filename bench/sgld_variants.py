"""Seconds per SGLD step (forward + input gradient) for the step variants issue 17 lists as speed candidates.

    python bench/sgld_variants.py --depth 16 --width 2 --batch 64 --steps 5 --repeats 3

Variants, each with the model in NCHW and in channels-last memory format: eager as ``ebm.sampling.sgld``
runs it; eager with the parameters frozen (``requires_grad=False``: does autograd skip the weight
gradients already?); ``torch.compile`` of the model, with the parameters trainable and frozen (compile
time shown apart).
Prints a markdown table: the best of ``--repeats`` timings of ``--steps`` steps, after one warm-up call.
Compare only numbers taken in the same run.
"""
from __future__ import annotations

import argparse
import dataclasses
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.train_speed import bench_params  # noqa: E402
from ebm.models.wrn import build_model  # noqa: E402
from ebm.sampling import sgld  # noqa: E402


def time_variant(model: torch.nn.Module, x0: torch.Tensor, *, frozen: bool, compiled: bool, steps: int,
                 repeats: int) -> tuple[float, float]:
    """(seconds per step, seconds of the first call: compilation for a compiled model)."""
    for q in model.parameters():
        q.requires_grad_(not frozen)
    net = torch.compile(model, dynamic=False) if compiled else model
    t = time.perf_counter()
    sgld(net, x0, steps=1, lr=1.0, std=0.01)
    first = time.perf_counter() - t
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        sgld(net, x0, steps=steps, lr=1.0, std=0.01)
        best = min(best, (time.perf_counter() - t) / steps)
    for q in model.parameters():
        q.requires_grad_(True)
    return best, first


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml", help="the model section, with --depth and --width")
    ap.add_argument("--depth", type=int, default=16)
    ap.add_argument("--width", type=int, default=2)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-compile", action="store_true", help="leave out the torch.compile rows")
    a = ap.parse_args()
    torch.manual_seed(0)
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {platform.machine()}, "
          f"torch {torch.__version__} {torch.get_num_threads()} threads, WRN-{a.depth}-{a.width}, "
          f"batch {a.batch}, CPU")
    print("| memory format | variant | s / SGLD step | vs eager | first call s |")
    print("| --- | --- | --- | --- | --- |")
    variants = [("eager", False, False), ("eager, frozen params", True, False)]
    if not a.no_compile:
        variants += [("torch.compile", False, True), ("torch.compile, frozen params", True, True)]
    for fmt in (torch.contiguous_format, torch.channels_last):
        cfg = bench_params(a.params, depth=a.depth, width=a.width, batch_size=a.batch, sgld_steps=a.steps).model
        model = build_model(dataclasses.replace(cfg, init="pytorch"), 10).eval()  # the JEM code's init
        model = model.to(memory_format=fmt)
        x0 = (torch.rand(a.batch, 3, 32, 32) * 2 - 1).contiguous(memory_format=fmt)
        base = None
        for name, frozen, compiled in variants:
            s, first = time_variant(model, x0, frozen=frozen, compiled=compiled, steps=a.steps, repeats=a.repeats)
            base = base or s
            label = "channels-last" if fmt is torch.channels_last else "NCHW"
            print(f"| {label} | {name} | {s:.3f} | {base / s:.2f}× | {first:.1f} |", flush=True)


if __name__ == "__main__":
    main()
