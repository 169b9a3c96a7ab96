"""The training benchmarks run and print their tables (tiny settings: this checks the scripts, not speed)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--depth", "10", "--width", "1", "--batch-size", "8", "--sgld-steps", "1", "--chains", "4",
        "--iters", "1", "--warmup", "0"]


def _run(*args: str) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    r = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


def _rows(out: str) -> dict[str, list[str]]:
    """Table rows by their first cell (header and separator left out)."""
    rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in out.splitlines()
            if line.startswith("|") and not line.startswith("| ---") and not line.startswith("|---")]
    return {r[0]: r[1:] for r in rows[1:]}


def test_train_speed_prints_a_row_per_objective_with_the_chains_it_was_given():
    out = _run("bench/train_speed.py", *TINY, "--objectives", "softmax", "jem", "--device", "cpu")
    assert "batch 8, K=1 (jem, hdge_jem), 4 chains" in out, out
    rows = _rows(out)
    assert set(rows) == {"softmax", "jem"}, out
    assert all(float(r[0]) > 0 for r in rows.values()), out


def test_profile_step_shares_add_up_to_the_whole_iteration():
    out = _run("bench/profile_step.py", *TINY, "--objectives", "softmax", "jem")
    rows = _rows(out)
    assert set(rows) == {"softmax", "jem"}, out
    for name, r in rows.items():
        shares = [float(c.rstrip(" %")) for c in r[1:]]
        assert len(shares) == 6 and abs(sum(shares) - 100) < 0.5, (name, out)
    assert float(rows["softmax"][1].rstrip(" %")) == 0.0  # softmax has no sampler
    assert float(rows["jem"][1].rstrip(" %")) > 0.0


@pytest.mark.slow
def test_ddp_scaling_runs_one_and_two_processes():
    out = _run("bench/ddp_scaling.py", *TINY, "--objective", "jem", "--nprocs", "1", "2", "--device", "cpu")
    assert "4 chains" in out, out
    rows = _rows(out)
    assert set(rows) == {"1", "2"} and rows["1"][-1] == "1.00×", out


def test_ablate_default_skips_a_candidate_an_objective_rejects_and_goes_on(tmp_path):
    """`pxy0.3` applies to sada_jem's params but sada_jem rejects pxy_weight > 0: a skip line, not a crash."""
    import numpy as np

    from ebm.data import DatasetArrays, write_dataset
    rng = np.random.default_rng(0)
    images = lambda n: rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)  # noqa: E731
    write_dataset(DatasetArrays("shapes", ["a", "b"], images(8), np.arange(8) % 2, images(4), np.arange(4) % 2, {}),
                  tmp_path / "shapes", provenance={})
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    r = subprocess.run([sys.executable, "bench/ablate_default.py", "--data", str(tmp_path / "shapes"),
                        "--objectives", "sada_jem", "--candidates", "pxy0.3", "--out", str(tmp_path / "rows.jsonl")],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "skip sada_jem pxy0.3: train.sada_jem.pxy_weight" in r.stderr, r.stderr
    assert not (tmp_path / "rows.jsonl").exists()


def test_ablate_table_prints_each_objectives_auroc_columns():
    """jem's and hdge_jem's rows once showed `logpx` only; each sampling objective's row shows `logpx` and `pxgrad`."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("ablate_default", ROOT / "bench" / "ablate_default.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    ood = {"noise": {"logpx": 0.25, "pxgrad": 0.75, "maxprob": 0.5}}
    rows = [{"dataset": "shapes", "objective": o, "candidate": "base", "accuracy": 90.0, "ece": 5.0,
             "ood": ood, "seconds": 1.0, "retries": 0} for o in ("jem", "jempp", "sada_jem", "hdge_jem", "hdge", "softmax")]
    lines = mod.table(rows).splitlines()[2:]
    for line in lines[:4]:
        assert "0.250 / 0.750 (logpx/pxgrad)" in line, line
    for line in lines[4:]:
        assert "0.250 / 0.500 / 0.750 (logpx/maxprob/pxgrad)" in line, line


def test_ablate_table_marks_each_row_against_softmax_of_the_same_seed():
    """The bar column: within 3 points of softmax's accuracy, a lower ECE, and on every OOD set a generative
    score (not maxprob) above softmax's same score; judged against softmax's finished base row of the same
    dataset and --set only."""
    mod = _bench_module("ablate_default")

    def ood(noise, textures, maxprob=0.5):
        return {"noise": {"logpx": noise[0], "pxgrad": noise[1], "maxprob": maxprob},
                "textures": {"logpx": textures[0], "pxgrad": textures[1], "maxprob": maxprob}}

    def row(o, c, s, acc, ece, au, dataset="shapes", **extra):
        return {"dataset": dataset, "objective": o, "candidate": c, "set": s, "accuracy": acc, "ece": ece,
                "ood": au, "seconds": 1.0, "retries": 0, **extra}
    rows = [row("softmax", "base", "seed=0", 100 * 0.972, 2.0, ood((0.5, 0.6), (0.2, 0.5))),
            row("jem", "base", "seed=0", 100 * 0.942, 1.9, ood((0.9, 0.1), (0.1, 0.6))),  # 3.0 behind (in floats 3.0000…1)
            row("jem", "a", "seed=0", 94.1, 1.9, ood((0.9, 0.1), (0.3, 0.1))),       # 3.1 behind
            row("jem", "b", "seed=0", 97.0, 2.0, ood((0.9, 0.1), (0.3, 0.1))),       # ECE level: not ahead
            row("jem", "c", "seed=0", 99.0, 1.0, ood((0.9, 0.1), (0.2, 0.5))),       # textures only level
            row("jem", "d", "seed=0", 99.0, 1.0, ood((0.4, 0.5), (0.1, 0.4), 0.99)),  # ahead on maxprob only
            row("jem", "e", "seed=0", float("nan"), float("nan"), {}, diverged="loss"),
            row("jem", "base", "seed=1", 99.0, 1.0, ood((0.9, 0.9), (0.9, 0.9))),    # no softmax row for seed=1
            row("softmax", "base", "seed=2", float("nan"), float("nan"), {}, diverged="loss"),
            row("jem", "base", "seed=2", 99.0, 1.0, ood((0.9, 0.9), (0.9, 0.9))),    # softmax diverged: no reference
            row("jem", "base", "seed=0", 10.0, 9.0, ood((0.9, 0.9), (0.9, 0.9)), dataset="cifar10")]  # no cifar10 softmax
    marks = [line.rsplit("|", 2)[1].strip() for line in mod.table(rows).splitlines()[2:]]
    assert marks == ["-", "acc ✓ ECE ✓ OOD ✓", "acc ✗ ECE ✓ OOD ✓", "acc ✓ ECE ✗ OOD ✓", "acc ✓ ECE ✓ OOD ✗",
                     "acc ✓ ECE ✓ OOD ✗", "diverged", "no reference", "-", "no reference", "no reference"], marks


def _bench_module(name: str):
    import importlib.util
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _tiny_data():
    import numpy as np

    from ebm.data import DatasetArrays
    rng = np.random.default_rng(0)
    images = lambda n: rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)  # noqa: E731
    return DatasetArrays("shapes", ["a", "b"], images(32), np.arange(32) % 2, images(8), np.arange(8) % 2, {})


@pytest.mark.parametrize("objective", ["hdge_jem", "sada_jem"])
def test_grad_balance_measures_without_changing_the_run(objective):
    """Measuring at every step (samples drawn on a copy of the replay buffer and HDGE's queue, under a forked
    RNG) leaves the run as the train stage runs it: the same weights, bit for bit (hdge_jem: buffer, queue
    and SGLD noise; sada_jem: SAM's two passes and the informative init)."""
    import torch

    from ebm.config import parse_params
    from ebm.train import train
    from tests.conftest import tiny_params_dict

    raw = tiny_params_dict()
    raw.update(objectives=[objective], datasets=["shapes"], runs={})
    raw["train"]["common"]["steps"] = 4
    data = _tiny_data()
    rows, ended, measured = _bench_module("grad_balance").run(raw, objective, data, torch.device("cpu"), every=1)
    plain = train(parse_params(raw), objective, data, torch.device("cpu"), progress=False).model
    assert ended == "4 steps" and [r["step"] for r in rows] == list(range(4))
    assert rows[0]["ratio"] > 0  # the p(x) term (and hdge_jem's contrastive term) is on
    for (name, a), b in zip(measured.state_dict().items(), plain.state_dict().values()):
        assert torch.equal(a, b), name


def test_grad_balance_prints_each_table_with_a_row_per_objective(tmp_path):
    import yaml

    from ebm.data import write_dataset
    from tests.conftest import tiny_params_dict
    write_dataset(_tiny_data(), tmp_path / "shapes", provenance={})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(tiny_params_dict()))
    out = _run("bench/grad_balance.py", "--params", str(tmp_path / "params.yaml"), "--data", str(tmp_path / "shapes"),
               "--objectives", "softmax", "jem", "--every", "2", "--window", "3", "--device", "cpu")
    tables = [t for t in out.split("\n\n") if t.startswith("| objective")]
    assert len(tables) == 4, out
    ratio = _rows(tables[0])
    assert list(ratio) == ["softmax", "jem"] and ratio["softmax"][:2] == ["0.00", "0.00"], out  # CE is all of softmax's loss
    assert float(ratio["jem"][0]) > 0 and ratio["jem"][2] == "6 steps", out
