"""Seconds per training iteration and images per second, per objective, on this machine.

    python bench/train_speed.py --depth 16 --width 2 --iters 10 --objectives softmax jem

Prints a markdown table. Uses random 32×32 data (speed does not depend on content), the repository's
params.yaml for everything it does not override, and median wall time over ``--iters`` iterations
after ``--warmup`` (CUDA: synchronised with events). Compare only numbers taken on the same machine.
"""
from __future__ import annotations

import argparse
import copy
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ebm.config import Params, load_raw, parse_params  # noqa: E402
from ebm.data import DatasetArrays  # noqa: E402
from ebm.objectives import REGISTRY  # noqa: E402
from ebm.provenance import device_name, pick_device  # noqa: E402
from ebm.train import Trainer, autocast, train_step  # noqa: E402

SAMPLING = tuple(o for o, cls in REGISTRY.items() if cls.trains_sampler)  # sections with chains and a p(x) schedule


def random_dataset(name: str, n: int = 1024) -> DatasetArrays:
    """n random 32×32 images in 10 classes (speed does not depend on content), no test or OOD sets, under
    the name of a dataset of the params (whose ``train.augment`` block then applies)."""
    rng = np.random.default_rng(0)
    return DatasetArrays(name, [str(i) for i in range(10)], rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8),
                         rng.integers(0, 10, n).astype(np.int64), np.zeros((0, 32, 32, 3), np.uint8),
                         np.zeros(0, np.int64), {})


def bench_params(path: str, *, depth: int, width: int, batch_size: int, sgld_steps: int,
                 chains: int | None = None) -> Params:
    """``path``'s params with the benchmark's network, batch and K (jem, hdge_jem), and ``chains`` SGLD
    chains per step for every sampling objective (None: as many as labelled images, the JEM paper's).
    The p(x) term is on at full weight from the first step (``px_start``, ``px_ramp`` 0), so that the
    timed steps are the sampling steps whatever the default's schedule."""
    raw = copy.deepcopy(load_raw(path))
    raw["model"].update(depth=depth, width=width)
    raw["train"]["common"].update(batch_size=batch_size)
    chains = batch_size if chains is None else chains
    for o in SAMPLING:
        raw["train"][o].update(sample_batch_size=chains, px_start=0, px_ramp=0)
    for o in ("jem", "hdge_jem"):
        raw["train"][o].update(sgld_steps=sgld_steps)
    return parse_params(raw)


def bench_parser(description: str, *, iters: int, warmup: int, device: str, device_help: str = "",
                 depth: int = 16, width: int = 2, sgld_steps: int = 20, one_objective: bool = False,
                 batch_help: str = "") -> argparse.ArgumentParser:
    """The arguments every training benchmark takes: params file, objective(s), network, batch, K, iterations.

    ``one_objective``: ``--objective NAME`` (default jem) instead of ``--objectives NAME …`` (default all six).
    """
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--params", default="params.yaml")
    if one_objective:
        p.add_argument("--objective", default="jem")
    else:
        p.add_argument("--objectives", nargs="+",
                       default=["softmax", "jem", "jempp", "sada_jem", "hdge", "hdge_jem"])
    p.add_argument("--depth", type=int, default=depth)
    p.add_argument("--width", type=int, default=width)
    p.add_argument("--batch-size", type=int, default=64, help=batch_help or None)
    p.add_argument("--sgld-steps", type=int, default=sgld_steps,
                   help="K for jem / hdge_jem (JEM paper: 20; jempp, sada_jem: params.yaml's)")
    p.add_argument("--chains", type=int, default=None,
                   help="SGLD chains per step, every sampling objective (default: the batch size, as the "
                        "JEM paper; params.yaml: 32)")
    p.add_argument("--iters", type=int, default=iters)
    p.add_argument("--warmup", type=int, default=warmup)
    p.add_argument("--device", default=device, help=device_help or None)
    return p


def params_from_args(args: argparse.Namespace) -> Params:
    return bench_params(args.params, depth=args.depth, width=args.width, batch_size=args.batch_size,
                        sgld_steps=args.sgld_steps, chains=args.chains)


def main() -> None:
    p = bench_parser(__doc__.splitlines()[0], iters=10, warmup=2, device="auto")
    p.add_argument("--bf16", action="store_true")
    p.add_argument("--channels-last", action="store_true")
    args = p.parse_args()
    device = pick_device(args.device)
    params = params_from_args(args)
    data = random_dataset(params.datasets[0])
    print(f"device: {device_name(device)}; torch {torch.__version__}; python {platform.python_version()}; "
          f"WRN-{args.depth}-{args.width}, batch {args.batch_size}, K={args.sgld_steps} (jem, hdge_jem), "
          f"{params.train.jem.sample_batch_size} chains; "
          f"median of {args.iters} iterations after {args.warmup} warm-up\n")
    print("| objective | s/iter | img/s (labelled) |")
    print("| --- | --- | --- |")
    for obj in args.objectives:
        tr = Trainer(params, obj, data, device, channels_last=args.channels_last)
        amp = autocast(device, args.bf16)
        times = []
        for i in range(args.warmup + args.iters):
            batch = tr.next_batch()
            if device.type == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            train_step(tr.model, tr.objective, tr.opt, batch, amp)
            if device.type == "cuda":
                torch.cuda.synchronize()
            if i >= args.warmup:
                times.append(time.perf_counter() - t)
        med = statistics.median(times)
        print(f"| {obj} | {med:.3f} | {args.batch_size / med:.1f} |", flush=True)


if __name__ == "__main__":
    main()
