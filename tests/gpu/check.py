"""The GPU path, checked on a machine with at least one NVIDIA GPU (`make test-gpu`; CI has none).

1. The whole DAG (every stage of pipeline/stages.py, in order) on the GPU: all six objectives, pretraining,
   generation, evaluation and the report, at a short budget (``--steps``), with ``EBM_DEVICE=cuda``.
2. jem with bf16 autocast and channels-last.
3. DDP on CUDA tensors: one step of softmax with ``norm: batch`` on 2 processes equals one process with the
   same global batch (SyncBatchNorm normalises over the global batch; plain batch norm would not), and jem
   with ``norm: batch`` on 2 processes finishes with only rank 0's outputs. With one GPU the 2 processes
   share it through gloo (``EBM_DIST_BACKEND=gloo``); with two or more they use NCCL, one GPU each.
4. Pretraining on 2 processes.

Prints one line per check and exits non-zero if any failed. Work happens in a temporary folder.
"""
from __future__ import annotations

import argparse
import copy
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from ebm.artifacts import read_metrics  # noqa: E402
from ebm.objectives import REGISTRY  # noqa: E402
from pipeline.stages import ORDER, STAGES, expand, fill, item_cmd  # noqa: E402

OBJECTIVES = ["softmax", "jem", "jempp", "sada_jem", "hdge", "hdge_jem"]
FAILED: list[str] = []
DEVICE = "cuda"


def check(name: str, ok: bool, detail: str = "") -> None:
    print(f"{'PASS' if ok else 'FAIL'} {name}{': ' + detail if detail else ''}", flush=True)
    if not ok:
        FAILED.append(name)


def sh(cmd: str | list[str], cwd: Path, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    t0 = time.perf_counter()
    r = subprocess.run(cmd, cwd=cwd, shell=isinstance(cmd, str), capture_output=True, text=True, timeout=timeout,
                       env={**os.environ, "PYTHONPATH": str(REPO), "EBM_NO_PROGRESS": "1", **(env or {})})
    print(f"  [{time.perf_counter() - t0:6.1f} s] rc={r.returncode} {cmd if isinstance(cmd, str) else ' '.join(cmd)}",
          flush=True)
    if r.returncode:  # the first error of a worker, not only torchrun's summary
        lines = (r.stdout + r.stderr).strip().splitlines()
        first = next((i for i, x in enumerate(lines) if "Traceback" in x or x.startswith("error:")), len(lines) - 15)
        print("  " + "\n  ".join(lines[max(first, 0):][:40]), flush=True)
    return r


def params(base: Path, steps: int) -> dict:
    p = copy.deepcopy(yaml.safe_load(base.read_text()))
    p["objectives"], p["datasets"] = OBJECTIVES, ["shapes"]
    p["train"]["common"].update(steps=steps)
    p["pretrain"].update(steps=steps)
    for o in (o for o, cls in REGISTRY.items() if cls.trains_sampler):  # the p(x) term from the first of these few steps
        p["train"][o].update(px_start=0)
    return p


def write(folder: Path, p: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
    return folder


def whole_dag(work: Path, p: dict) -> None:
    write(work, p)
    env = {"EBM_DEVICE": DEVICE}
    for name in ORDER:
        for item in expand(STAGES[name], p):
            r = sh(item_cmd(STAGES[name], **item).replace("python ", f"{sys.executable} ", 1), work, env)
            check(f"dag {name} {' '.join(item[k] for k in STAGES[name].matrix)}".strip(), r.returncode == 0)
            if r.returncode:
                return
    for o in p["objectives"]:
        dev = read_metrics(work / f"data/train/{o}/shapes/summary.json")["provenance"]["device"]
        acc = read_metrics(work / f"data/evaluate/{o}/shapes/metrics.json").get("accuracy")
        check(f"train {o} ran on {DEVICE}", dev.startswith(DEVICE), f"{dev}, test accuracy {acc}")
    r = sh([sys.executable, "-m", "pipeline.train", "--objective", "jem", "--dataset", "shapes", "--data",
            "data/datasets/shapes", "--out", "bf16", "--bf16", "--channels-last", "--device", DEVICE], work)
    check("jem with --bf16 --channels-last", r.returncode == 0)


def torchrun(n: int, module: str, args: list[str], cwd: Path, env: dict) -> subprocess.CompletedProcess:
    return sh([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(n),
               "-m", module, *args], cwd, env)


def ddp(work: Path, p: dict) -> None:
    env = {"EBM_DEVICE": DEVICE, "OMP_NUM_THREADS": "2"}
    if DEVICE == "cuda" and torch.cuda.device_count() < 2:
        env["EBM_DIST_BACKEND"] = "gloo"
    q = copy.deepcopy(p)
    q["model"]["norm"] = "batch"
    q["train"]["common"].update(steps=1, optimizer="sgd", lr=0.05, data_noise=0.0)
    q["train"]["augment"]["shapes"] = {"crop": False, "flip": False}
    write(work / "one", q)
    ds = str(work / "data/datasets/shapes")
    base = ["--dataset", "shapes", "--data", ds, "--device", DEVICE]
    # TF32 convolutions (PyTorch's default on GPUs) round differently for other batch splits: ~1e-3 apart
    exact = {"NVIDIA_TF32_OVERRIDE": "0"}
    r1 = sh([sys.executable, "-m", "pipeline.train", "--objective", "softmax", *base, "--out", "out"], work / "one",
            exact)
    r2 = torchrun(2, "pipeline.train", ["--objective", "softmax", *base, "--out", "two"], work / "one",
                  {**env, **exact})
    ok = r1.returncode == 0 and r2.returncode == 0
    if ok:
        a = torch.load(work / "one/out/model.pt", weights_only=True)["model"]
        b = torch.load(work / "one/two/model.pt", weights_only=True)["model"]
        worst, key = max((float((a[k].float() - b[k].float()).abs().max()), k) for k in a)
        ok = all(torch.allclose(b[k].float(), a[k].float(), rtol=1e-4, atol=1e-5) for k in a)
        check("SyncBatchNorm: 1 step of 2 processes == 1 process, global batch", ok, f"max |diff| {worst:.2e} ({key})")
    else:
        check("SyncBatchNorm: 1 step of 2 processes == 1 process, global batch", False, "a run failed")
    q = copy.deepcopy(p)
    q["model"]["norm"] = "batch"
    write(work / "jem2", q)
    r = torchrun(2, "pipeline.train", ["--objective", "jem", *base, "--out", "out", "--resume-dir", "resume"],
                 work / "jem2", env)
    outs = sorted(x.name for x in (work / "jem2/out").iterdir()) if (work / "jem2/out").is_dir() else []
    check(f"jem, norm: batch, 2 processes on {DEVICE}", r.returncode == 0 and "model.pt" in outs, ", ".join(outs))
    r = torchrun(2, "pipeline.pretrain", ["--dataset", "shapes", "--data", ds, "--device", DEVICE, "--out", "pre"],
                 work / "jem2", env)
    check(f"pretraining, 2 processes on {DEVICE}", r.returncode == 0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=60, help="training and pretraining steps (default 60)")
    ap.add_argument("--keep", default=None, help="work here instead of a temporary folder")
    ap.add_argument("--params", type=Path, default=REPO / "params.yaml", help="base params (default: params.yaml)")
    ap.add_argument("--only-ddp", action="store_true", help="skip the whole-DAG checks")
    ap.add_argument("--device", default="cuda", help=argparse.SUPPRESS)  # cpu: a dry run of this script
    args = ap.parse_args()
    global DEVICE
    DEVICE = args.device
    if DEVICE == "cuda" and not torch.cuda.is_available():
        print("error: no CUDA device is visible here; `make test-gpu` needs an NVIDIA GPU", file=sys.stderr)
        return 2
    if DEVICE == "cuda":
        print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.device_count()} x "
              f"{torch.cuda.get_device_name(0)}", flush=True)
    with tempfile.TemporaryDirectory(prefix="ebm-gpu-") as tmp:
        work = Path(args.keep or tmp)
        p = params(args.params, args.steps)
        if args.only_ddp:  # the dataset only, then the multi-process checks
            write(work, p)
            sh(fill(STAGES["data"].cmd, dataset="shapes").replace("python ", f"{sys.executable} ", 1), work)
        else:
            whole_dag(work, p)
        if not FAILED:
            ddp(work, p)
    print(f"{len(FAILED)} check(s) failed: {', '.join(FAILED)}" if FAILED else "ALL GPU CHECKS PASSED")
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
