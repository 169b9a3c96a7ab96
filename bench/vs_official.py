"""The project's side of ``bench/vs_official.sh``: our JEM iteration at the official code's config, and our
default JEM's accuracy and wall time on a dataset folder. Prints one JSON line per measurement.

    python bench/vs_official.py speed --data DIR --depth 16 --width 2 --sgld-steps 20 --warmup 3 --iters 10
    python bench/vs_official.py accuracy --data DIR

``speed`` times what the official harness times: a whole iteration, from fetching the batch (augmentation
and noise included) to the optimizer step, at the JEM README's CIFAR-10 settings (batch 64, K=20, 64
chains, buffer 10,000, SGLD step 1, noise 0.01, data noise 0.03, no energy penalty, PyTorch's default
init, no normalisation). ``accuracy`` trains ``params.yaml``'s own JEM (the default run's network and
recipe) on the dataset with the train stage's code, then reports test accuracy under test-time noise 0.03,
as the official code evaluates.
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ebm.config import load_raw, parse_params  # noqa: E402
from ebm.data import load_dataset  # noqa: E402
from ebm.eval.run import evaluate  # noqa: E402
from ebm.train import Trainer, autocast, train, train_step  # noqa: E402


def scoped(raw: dict, dataset: str) -> dict:
    raw = copy.deepcopy(raw)
    raw.update(objectives=["jem"], datasets=[dataset], runs={})
    return raw


def official_config(raw: dict, *, depth: int, width: int, sgld_steps: int) -> dict:
    """``raw`` at the JEM README's CIFAR-10 command (train_wrn_ebm.py) with the network shrunk."""
    raw["model"].update(depth=depth, width=width, norm="none", init="pytorch", dropout=0.0)
    raw["train"]["common"].update(batch_size=64, data_noise=0.03, optimizer="adam", weight_decay=0.0)
    raw["train"]["jem"].update(px_weight=1.0, pxy_weight=0.0, sgld_steps=sgld_steps, sgld_lr=1.0, sgld_std=0.01,
                               buffer_size=10000, reinit_freq=0.05, sample_batch_size=64, energy_l2=0.0,
                               px_start=0, px_ramp=0, px_until=1.0, init="uniform", split_optimizer=0.0)
    return raw


def speed(args) -> dict:
    data = load_dataset(args.data)
    raw = official_config(scoped(load_raw(args.params), data.name), depth=args.depth, width=args.width,
                          sgld_steps=args.sgld_steps)
    tr = Trainer(parse_params(raw), "jem", data, torch.device("cpu"), channels_last=args.channels_last)
    amp = autocast(torch.device("cpu"), args.bf16)
    times = []
    for i in range(args.warmup + args.iters):
        t = time.perf_counter()
        tr.objective.set_step(tr.step)
        train_step(tr.net, tr.objective, tr.opt, tr.next_batch(), amp)
        tr.step += 1
        if i >= args.warmup:
            times.append(time.perf_counter() - t)
    return {"what": "speed", "s_per_iter_median": statistics.median(times), "s_per_iter_min": min(times),
            "s_per_iter_max": max(times), "iters": args.iters, "threads": torch.get_num_threads(),
            "depth": args.depth, "width": args.width, "sgld_steps": args.sgld_steps, "channels_last": args.channels_last,
            "bf16": args.bf16}


def accuracy(args) -> dict:
    data = load_dataset(args.data)
    raw = scoped(load_raw(args.params), data.name)
    raw["evaluate"]["test_noise"] = 0.03  # the official code's test transform
    params = parse_params(raw)
    t0 = time.perf_counter()
    result = train(params, "jem", data, torch.device("cpu"), progress=False, bf16=args.bf16)
    seconds = time.perf_counter() - t0
    metrics, _, _ = evaluate(result.model, data, params.evaluate, torch.device("cpu"), progress=False)
    m = params.model
    return {"what": "accuracy", "test_acc": 100 * metrics["accuracy"], "train_s": seconds,
            "steps": params.train.common.steps, "network": f"WRN-{m.depth}-{m.width}", "retries": result.retries,
            "bf16": args.bf16}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", choices=["speed", "accuracy"])
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--data", required=True, help="a dataset folder written by the data stage")
    p.add_argument("--depth", type=int, default=16)
    p.add_argument("--width", type=int, default=2)
    p.add_argument("--sgld-steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--channels-last", action="store_true", help="speed: the train stage's --channels-last")
    p.add_argument("--bf16", action="store_true", help="the train stage's --bf16 (bf16 autocast)")
    args = p.parse_args()
    print(json.dumps(speed(args) if args.what == "speed" else accuracy(args)), flush=True)


if __name__ == "__main__":
    main()
