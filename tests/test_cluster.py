"""Snakemake's job resources, logs, thread counts and GPU slots (the SLURM run itself: `make test-cluster`)."""
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import torch
import yaml

from ebm import provenance
from pipeline.resources import JOBS, TRAIN_RETRIES
from tests.conftest import REPO, tiny_params_dict, write_params
from ebm.artifacts import read_metrics

BIN = Path(sys.executable).parent


def _workflow(tmp_path: Path, params: dict) -> Path:
    work = tmp_path / "wf"
    work.mkdir()
    for f in ("Snakefile", "pipeline", "ebm", "profiles", "envs", "data/raw/shapes"):
        (shutil.copytree if (REPO / f).is_dir() else shutil.copy)(REPO / f, work / f)
    write_params(work / "params.yaml", params)
    return work


def _snakemake(work: Path, *args: str, **env: str) -> str:
    r = subprocess.run([str(BIN / "snakemake"), *args], cwd=work, capture_output=True, text=True,
                       env={"PATH": f"{BIN}:/usr/bin:/bin", "EBM_NO_PROGRESS": "1", "HOME": str(work), **env})
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r.stdout + r.stderr


def _dry_run_jobs(out: str) -> list[tuple[str, str]]:
    """(rule, job block) for each job a dry run lists, local rules included."""
    return re.findall(r"\n(?:local)?rule (\w+):\n(.*?)\n\n", out, re.S)


def test_snakemake_lint_is_clean(tmp_path):
    out = _snakemake(_workflow(tmp_path, tiny_params_dict()), "--lint")  # in a copy: parsing writes files
    assert "Lints for" not in out and "good condition" in out


def test_slurm_dry_run_submits_every_heavy_job_with_its_resources(tmp_path):
    pytest.importorskip("snakemake_executor_plugin_slurm")
    p = tiny_params_dict()
    p["objectives"], p["datasets"] = ["softmax", "jem"], ["shapes"]
    out = _snakemake(_workflow(tmp_path, p), "all", "-n", "--profile", "profiles/slurm", "--cores", "64")
    seen = {}
    for rule, body in _dry_run_jobs(out):
        if rule in ("all", "params", "report"):  # local rules (a dry run lists them as rules too)
            continue
        res = re.search(r"resources: (.*)", body).group(1)
        job = JOBS[rule]
        assert f"mem_mb={job.mem_mb}," in res and f"runtime={job.runtime}," in res and f"gpu={job.gpu}" in res, res
        assert f"threads: {job.threads}" in body and "slurm_partition=<PARTITION>" in res
        seen[rule] = seen.get(rule, 0) + 1
    assert seen == {"data": 1, "pretrain": 1, "train": 2, "generate": 2, "evaluate": 2}
    local = re.search(r"\nlocalrules:\n((?:    \w+,\n)+)", (REPO / "Snakefile").read_text()).group(1)
    assert local.split() == ["all,", "train_all,", "params,", "report,"]  # seconds of work: never submitted
    assert TRAIN_RETRIES >= 1 and JOBS["train"].gpu == 1


def test_the_repro_profile_runs_every_job_on_one_thread(tmp_path):
    """profiles/repro (what `make repro` runs) sets one thread for every rule of pipeline/resources.py,
    so that a rule added there without a line in the profile fails here rather than running on 8 threads."""
    profile = yaml.safe_load((REPO / "profiles/repro/config.yaml").read_text())
    assert profile["set-threads"] == {rule: 1 for rule in JOBS}
    p = tiny_params_dict()
    p["objectives"], p["datasets"] = ["softmax", "jem"], ["shapes"]
    work = _workflow(tmp_path, p)

    def threads(*args: str) -> dict[str, set[int]]:
        """Each rule's threads in a dry run (Snakemake prints a `threads:` line only above 1)."""
        out = _snakemake(work, "all", "-n", "--cores", "2", *args)
        seen: dict[str, set[int]] = {}
        for rule, body in _dry_run_jobs(out):
            m = re.search(r"threads: (\d+)", body)
            seen.setdefault(rule, set()).add(int(m.group(1)) if m else 1)
        return seen
    plain = threads()  # the control: without the profile the heavy rules take both cores
    assert plain["train"] == {2} and plain["evaluate"] == {2}, plain
    repro = threads("--profile", "profiles/repro")
    assert set(repro) == {*JOBS, "all"} and all(t == {1} for t in repro.values()), repro


@pytest.mark.slow  # kept out of `make test`'s 10 minutes; `make test-slow` and CI run it
def test_jobs_use_their_threads_and_write_their_logs(tmp_path):
    """--cores 2 with train set to 1 thread: two train jobs side by side, one thread each (not torch's
    default of one per core); then one job alone gets both cores (not Snakemake's 1 for rules without
    `threads:`)."""
    p = tiny_params_dict()
    p["objectives"], p["datasets"] = ["softmax", "jem"], ["shapes"]
    work = _workflow(tmp_path, p)
    _snakemake(work, "train_all", "--cores", "2", "--set-threads", "train=1")
    for obj in ("softmax", "jem"):
        s = read_metrics(work / f"data/train/{obj}/shapes/summary.json")
        assert s["provenance"]["device"].endswith(" x1 threads"), s["provenance"]["device"]
        log = (work / f"logs/jobs/train/{obj}/shapes.log").read_text()
        assert f"trained {obj} on shapes" in log
    assert (work / "logs/jobs/data/shapes.log").is_file()
    _snakemake(work, "data/train/softmax/shapes/model.pt", "--cores", "2", "--forcerun", "train")
    s = read_metrics(work / "data/train/softmax/shapes/summary.json")
    assert s["provenance"]["device"].endswith(" x2 threads"), s["provenance"]["device"]


def test_concurrent_jobs_get_distinct_gpus(tmp_path, monkeypatch):
    monkeypatch.setenv("EBM_GPU_LOCK_DIR", str(tmp_path / "locks"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", lambda i: None)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    held = len(provenance._HELD)
    try:
        # each call holds its slot like a separate job process would (an flock per open file)
        assert provenance.pick_device("auto") == torch.device("cuda:0")
        assert provenance.pick_device("auto") == torch.device("cuda:1")
        provenance._HELD.pop(0).close()  # the first job ends: its GPU is free again
        assert provenance.pick_device("auto") == torch.device("cuda:0")
        monkeypatch.setenv("LOCAL_RANK", "0")  # torchrun places its workers itself
        assert provenance.pick_device("auto") == torch.device("cuda")
    finally:
        while len(provenance._HELD) > held:
            provenance._HELD.pop().close()


def test_local_runs_bound_gpu_jobs_by_the_gpus_present(tmp_path):
    work = _workflow(tmp_path, tiny_params_dict())
    out = _snakemake(work, "data/params/validated.txt", "--cores", "1", CUDA_VISIBLE_DEVICES="0,1")
    assert "gpu: at most 2 GPU jobs at once" in out
    out = _snakemake(work, "data/params/validated.txt", "--cores", "1", "--forceall", CUDA_VISIBLE_DEVICES="")
    assert "gpu: at most" not in out  # no GPUs: not bounded, the jobs run on the CPU


def test_gpus_present_follows_cuda_visible_devices(monkeypatch):
    from pipeline.resources import gpus_present
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,3")
    assert gpus_present() == 2
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert gpus_present() == 0


def test_conda_env_pins_the_runtime_dependencies():
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    env = yaml.safe_load((REPO / "envs/pipeline.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert pip == [d for d in deps if not d.startswith(("dvc", "snakemake"))]
