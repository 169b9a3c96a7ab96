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
