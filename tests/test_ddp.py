"""Training under torchrun with 2 processes on the CPU (gloo): equivalence, one writer, per-rank buffer
shards, kill and resume, and the runners' launch command."""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import REPO, tiny_params_dict, write_params
from ebm.artifacts import read_metrics

ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "EBM_NO_PROGRESS": "1"}
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]


def _args(objective, out, cwd, extra=()):
    return ["--params", str(cwd / "params.yaml"), "--objective", objective, "--dataset", "shapes",
            "--data", str(cwd / "ds"), "--out", str(cwd / out), "--log-every", "1", "--no-progress", *extra]


def _torchrun(objective, out, cwd, extra=()):
    return [*TORCHRUN, "-m", "pipeline.train", *_args(objective, out, cwd, extra)]


def _in_process(objective, out, cwd, extra=()) -> int:
    """A plain one-process run, inside pytest (no second interpreter to start)."""
    from pipeline.common import run
    from pipeline.train import main

    return run(main, _args(objective, out, cwd, extra))


def _run(cmd, cwd):
    return subprocess.run(cmd, cwd=cwd, env=ENV, capture_output=True, text=True)


def _weights(path):
    return torch.load(path, weights_only=True)["model"]


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A tiny params file (SGD: Adam's first step is ~sign(g), too sensitive for a float comparison) and
    the shapes dataset."""
    from pipeline.common import run
    from pipeline.data import main

    work = tmp_path_factory.mktemp("ddp")
    p = tiny_params_dict()
    p["objectives"] = ["softmax", "jem"]
    p["train"]["common"].update(steps=10, optimizer="sgd", lr=0.05)
    write_params(work / "params.yaml", p)
    assert run(main, ["--params", str(work / "params.yaml"), "--dataset", "shapes", "--out", str(work / "ds")]) == 0
    return work


def _one_vs_two_processes(work, objective: str, p: dict) -> Path:
    """Train ``objective`` with params ``p`` in one process ("one") and on 2 (torchrun, "two"); assert the
    weights moved and are equal to float tolerance. Returns the run folder."""
    sub = Path(tempfile.mkdtemp(prefix=f"{objective}-", dir=work))  # one folder per test: two may share an objective
    write_params(sub / "params.yaml", p)
    (sub / "ds").symlink_to(work / "ds")
    assert _in_process(objective, "one", sub) == 0
    r = _run(_torchrun(objective, "two", sub), sub)
    assert r.returncode == 0, r.stderr
    a, b = _weights(sub / "one" / "model.pt"), _weights(sub / "two" / "model.pt")
    init = _weights_at_init(p, len(torch.load(sub / "one" / "model.pt", weights_only=True)["classes"]))
    assert any(not torch.equal(a[k], init[k]) for k in a), "the steps changed nothing"
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-5, atol=1e-6)
    return sub


def test_one_ddp_step_of_two_processes_equals_one_process_with_the_global_batch(work):
    p = tiny_params_dict()
    p["train"]["common"].update(steps=1, optimizer="sgd", lr=0.05, data_noise=0.0)
    p["train"]["augment"]["shapes"] = {"crop": False, "flip": False}
    sub = _one_vs_two_processes(work, "softmax", p)
    prov = [read_metrics(sub / d / "summary.json")["provenance"] for d in ("one", "two")]
    assert [x["world_size"] for x in prov] == [1, 2]


@pytest.mark.slow
def test_hdge_queue_gathers_the_logits_of_all_ranks(work):
    """The queue gathers every rank's logits before enqueueing (MoCo), so the 2nd step's contrast sees the
    same negatives as one process with the global batch: equal weights after 2 steps (without the gather
    each rank's queue holds half of them, and this fails)."""
    p = tiny_params_dict()
    p["objectives"] = ["softmax", "hdge"]
    p["train"]["common"].update(steps=2, optimizer="sgd", lr=0.05, data_noise=0.0, warmup_steps=0)
    p["train"]["augment"]["shapes"] = {"crop": False, "flip": False}
    _one_vs_two_processes(work, "hdge", p)


@pytest.mark.slow
def test_sam_ascent_uses_the_all_reduced_gradient(work):
    """SAM (sada_jem; px_weight 0 leaves CE + SAM, nothing sampled): 2 steps on 2 processes equal 1 process
    with the global batch. The ascent ε(w) must come from the all-reduced gradient; a first backward under
    no_sync gives each rank its own ε and different weights."""
    p = tiny_params_dict()
    p["objectives"] = ["softmax", "sada_jem"]
    p["train"]["common"].update(steps=2, optimizer="sgd", lr=0.05, data_noise=0.0, warmup_steps=0)
    p["train"]["augment"]["shapes"] = {"crop": False, "flip": False}
    p["train"]["sada_jem"].update(px_weight=0.0, rho=0.5)
    _one_vs_two_processes(work, "sada_jem", p)


@pytest.mark.slow  # a torchrun of its own; `make test-slow` and CI run it
def test_split_optimizer_averages_both_gradients_over_the_ranks(work):
    """split_optimizer (hdge: the contrast is the rest) takes its two gradients with autograd.grad, which DDP's
    reducer does not see; they are averaged over the ranks by hand. 2 steps on 2 processes equal 1 process with
    the global batch (without the average each rank steps on its own half of the batch, and this fails)."""
    p = tiny_params_dict()
    p["objectives"] = ["softmax", "hdge"]
    p["train"]["common"].update(steps=2, optimizer="sgd", lr=0.05, data_noise=0.0, warmup_steps=0)
    p["train"]["augment"]["shapes"] = {"crop": False, "flip": False}
    p["train"]["hdge"].update(split_optimizer=0.5)
    _one_vs_two_processes(work, "hdge", p)


def _weights_at_init(p, n_classes):
    from ebm.config import parse_params
    from ebm.models import build_model

    torch.manual_seed(p["train"]["common"]["seed"])
    return build_model(parse_params(p).model, n_classes).state_dict()


@pytest.fixture(scope="module")
def jem_ref(work):
    """An uninterrupted 2-process jem run, with resume state and TensorBoard."""
    r = _run(_torchrun("jem", "ref", work, ("--resume-dir", str(work / "ref_resume"), "--logdir", str(work / "tb"),
                                            "--checkpoint-every", "2")), work)
    assert r.returncode == 0, r.stderr
    return work


def test_jem_on_two_processes_finishes_and_only_rank_0_writes(jem_ref):
    work = jem_ref
    assert sorted(p.name for p in (work / "ref").iterdir()) == ["history.csv", "info.json", "model.pt", "summary.json"]
    assert sorted(p.name for p in (work / "ref_resume").iterdir()) == ["README.txt"]  # every rank cleaned up
    assert len(list((work / "tb").rglob("events.out.tfevents*"))) == 1
    rows = (work / "ref" / "history.csv").read_text().splitlines()
    assert len(rows) == 1 + 10


def test_kill_a_rank_then_rerun_resumes_and_equals_the_uninterrupted_run(jem_ref, capsys):
    work = jem_ref
    res = work / "res"
    resume = ("--resume-dir", str(res), "--checkpoint-every", "2")
    proc = subprocess.Popen(_torchrun("jem", "out", work, resume), cwd=work, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    saved = lambda: all(list(res.glob(f"state.rank{r}-of2.step*.pt")) for r in (0, 1))  # noqa: E731
    while not saved() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    rank1 = _worker_pid(proc.pid, rank=1)
    os.kill(rank1, signal.SIGKILL)
    err = proc.communicate(timeout=120)[1]
    assert proc.returncode != 0
    assert "Signal 9 (SIGKILL)" in err, err[-2000:]  # torchrun names the killed rank and the signal
    assert not (work / "out" / "model.pt").exists()

    # the two ranks' replay-buffer shards differ (chains seeded from (seed, rank)), half the size each
    step = min(max(int(p.name.rsplit("step", 1)[1][:-3]) for p in res.glob(f"state.rank{r}-of2.step*.pt"))
               for r in (0, 1))  # the newest step both ranks have written
    shards = [torch.load(res / f"state.rank{r}-of2.step{step}.pt", weights_only=True)["trainer"]["objective"]
              ["buffer"]["buffer"] for r in (0, 1)]
    assert shards[0].shape[0] == shards[1].shape[0] == tiny_params_dict()["train"]["jem"]["buffer_size"] // 2
    assert not torch.equal(shards[0], shards[1])

    # another world size is refused, with how to resume
    assert _in_process("jem", "out", work, resume) == 2
    assert "--nproc-per-node 2" in capsys.readouterr().err

    r = _run(_torchrun("jem", "out", work, resume), work)
    assert r.returncode == 0, r.stderr
    assert "resume: continuing from step" in r.stdout
    a, b = _weights(work / "ref" / "model.pt"), _weights(work / "out" / "model.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    strip = lambda t: [line.rsplit(",", 1)[0] for line in t.splitlines()]  # drop the seconds column  # noqa: E731
    assert strip((work / "ref" / "history.csv").read_text()) == strip((work / "out" / "history.csv").read_text())


def _worker_pid(torchrun_pid: int, rank: int) -> int:
    """The pid of torchrun's worker with RANK=rank (a child process whose environment says so)."""
    for _ in range(200):
        for d in Path("/proc").iterdir():
            if not d.name.isdigit():
                continue
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
                env = (d / "environ").read_bytes().split(b"\0")
            except (OSError, IndexError, ValueError):
                continue
            if ppid == torchrun_pid and f"RANK={rank}".encode() in env:
                return int(d.name)
        time.sleep(0.05)
    raise AssertionError(f"no worker with RANK={rank} under pid {torchrun_pid}")


def test_snakemake_launches_a_gpu_2_train_job_under_torchrun(tmp_path):
    work = tmp_path / "wf"
    work.mkdir()
    for f in ("Snakefile", "pipeline", "ebm", "data/raw/shapes"):
        (shutil.copytree if (REPO / f).is_dir() else shutil.copy)(REPO / f, work / f)
    write_params(work / "params.yaml", tiny_params_dict())
    snakemake = Path(sys.executable).parent / "snakemake"
    cmd = [str(snakemake), "-n", "--forceall", "--printshellcmds", "--cores", "1", "train_all"]
    r = subprocess.run([*cmd, "--set-resources", "train:gpu=2"], cwd=work, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr + r.stdout
    assert "torchrun --standalone --nproc-per-node 2 -m pipeline.train --objective jem" in r.stdout
    # gpu=1 (the default) runs `python -m pipeline.train`: tests/test_stages.py checks it


@pytest.mark.slow
def test_pretraining_on_two_processes_writes_what_one_process_writes(work):
    r = _run([*TORCHRUN, "-m", "pipeline.pretrain", "--params", "params.yaml", "--dataset", "shapes", "--data", "ds",
              "--out", "pre2", "--no-progress"], work)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (work / "pre2").iterdir()) == ["history", "info.json", "metrics.json", "models"]
    weights = tiny_params_dict()["pretrain"]["contrastive_weights"]
    assert sorted(p.name for p in (work / "pre2" / "models").iterdir()) == sorted(f"w{w:g}.pt" for w in weights)
    assert read_metrics(work / "pre2" / "metrics.json")["provenance"]["world_size"] == 2


@pytest.mark.parametrize("value, message", [("mpi", "expected nccl or gloo"), ("nccl", "needs GPUs")])
def test_dist_backend_variable_is_checked(monkeypatch, value, message):
    from ebm.distributed import process_group_backend
    from ebm.errors import UsageError

    monkeypatch.setenv("EBM_DIST_BACKEND", value)
    with pytest.raises(UsageError, match=message):
        process_group_backend(torch.device("cpu"))
    monkeypatch.delenv("EBM_DIST_BACKEND")
    assert process_group_backend(torch.device("cpu")) == "gloo"


@pytest.mark.slow  # 20-40 s: a torchrun launch; make test keeps the other 2-process checks
def test_divergence_on_one_rank_rolls_every_rank_back(work, tmp_path):
    """Rank 1 alone sees a NaN at step 3: both ranks roll back to step 2 together, retry once and end with
    the same weights (without the all-reduced flag, rank 0 would go on, and the ranks' weights and step
    counts would part: different weights, or a hang that the timeout turns into a failure)."""
    cmd = [*TORCHRUN, str(REPO / "tests" / "ddp_fault_worker.py"), str(work / "params.yaml"), str(work / "ds"),
           str(tmp_path)]
    r = subprocess.run(cmd, cwd=work, env=ENV, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    import json

    ranks = [json.loads((tmp_path / f"rank{i}.json").read_text()) for i in (0, 1)]
    assert [x["retries"] for x in ranks] == [1, 1]
    assert ranks[0]["weights"] == ranks[1]["weights"]
    assert ranks[0]["steps"] == ranks[1]["steps"] == list(range(10))
    assert "rolled back to step 2" in r.stdout + r.stderr
