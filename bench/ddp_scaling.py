"""Training steps per second and images per second for 1, 2, … DDP processes (torchrun), one objective.

    python bench/ddp_scaling.py --nprocs 1 2 --objective jem --iters 10

Each row is one ``torchrun --standalone --nproc-per-node N`` launch of this file; the global batch stays
``--batch-size`` (each rank takes batch / N), as in the train stage. Random 32×32 data, the repository's
params.yaml for everything not overridden, wall time of ``--iters`` steps after ``--warmup`` measured on
rank 0 between two barriers. On the CPU (gloo) all processes share the machine's cores, so the figures show
the cost of the machinery, not the speed-up N GPUs would give. Prints a markdown table.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ebm.distributed import barrier, close_world, init_world  # noqa: E402
from ebm.provenance import device_name, pick_device  # noqa: E402
from ebm.train import Trainer, train_step  # noqa: E402
from train_speed import bench_parser, params_from_args, random_dataset  # noqa: E402  (bench/ is this script's folder)


def worker(args) -> None:
    """One rank: time ``iters`` training steps; rank 0 prints one JSON line."""
    world, device = init_world(pick_device(args.device))
    params = params_from_args(args)
    tr = Trainer(params, args.objective, random_dataset(params.datasets[0]), device, world=world)
    for i in range(args.warmup + args.iters):
        if i == args.warmup:
            barrier()
            t0 = time.perf_counter()
        train_step(tr.net, tr.objective, tr.opt, tr.next_batch())
    if device.type == "cuda":
        torch.cuda.synchronize()
    barrier()
    seconds = time.perf_counter() - t0
    if world.main:
        print("RESULT " + json.dumps({"nprocs": world.size, "seconds": seconds, "device": device_name(device)}))
    close_world()


def main() -> None:
    p = bench_parser(__doc__.splitlines()[0], iters=10, warmup=2, device="auto", depth=10, width=1,
                     sgld_steps=5, one_objective=True, batch_help="global batch (split over the processes)")
    p.add_argument("--nprocs", type=int, nargs="+", default=[1, 2])
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return worker(args)
    rows = []
    for n in args.nprocs:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(n),
               __file__, "--worker", *sys.argv[1:]]
        r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS":
                                                                    os.environ.get("OMP_NUM_THREADS", "1")})
        line = next((x for x in r.stdout.splitlines() if x.startswith("RESULT ")), None)
        if r.returncode != 0 or line is None:
            sys.exit(f"error: {n} process(es) failed:\n{r.stderr[-2000:]}")
        rows.append(json.loads(line[len("RESULT "):]))
    print(f"device: {rows[0]['device']}; torch {torch.__version__}; python {platform.python_version()}; "
          f"{args.objective}, WRN-{args.depth}-{args.width}, global batch {args.batch_size}, K={args.sgld_steps} (jem, hdge_jem), "
          f"{args.batch_size if args.chains is None else args.chains} chains, "
          f"{args.iters} steps after {args.warmup} warm-up; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '1')}")
    print(f"| processes | steps/s | images/s | vs {rows[0]['nprocs']} |\n|---|---|---|---|")
    base = None
    for r in rows:
        sps = args.iters / r["seconds"]
        base = base or sps
        print(f"| {r['nprocs']} | {sps:.2f} | {sps * args.batch_size:.0f} | {sps / base:.2f}× |")


if __name__ == "__main__":
    main()
