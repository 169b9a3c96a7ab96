"""The pipeline under DVC and Snakemake in a scratch git repository, on tiny settings.

Checks what a user relies on: a second `dvc repro` runs nothing, Snakemake then has nothing to do,
editing one train.jem parameter reruns only the JEM branch, metrics and params diffs, and a typo in
params.yaml stops `dvc repro` before any work.
"""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, tiny_params_dict, write_params

BIN = Path(sys.executable).parent


def sh(*cmd, cwd, check=True):
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "EBM_NO_PROGRESS": "1", "EBM_OFFLINE": "1"}
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return r


def ran(out: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", out))


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    work = tmp_path_factory.mktemp("pipeline")
    for f in ("Snakefile", "dvc.yaml", ".dvcignore", ".gitignore", "pipeline", "ebm", "envs", ".dvc"):
        src = REPO / f
        if src.is_dir():
            shutil.copytree(src, work / f, ignore=shutil.ignore_patterns("__pycache__", "tmp", "cache"))
        else:
            shutil.copy(src, work / f)
    write_params(work / "params.yaml", tiny_params_dict())
    sh("git", "init", "-q", cwd=work)
    sh("git", "-c", "user.name=t", "-c", "user.email=t@t", "add", "-A", cwd=work)
    sh("git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init", cwd=work)
    first = sh("dvc", "repro", cwd=work)
    assert (work / "data/report/index.html").is_file()
    assert ran(first.stdout) == {"params", "data@shapes", "pretrain@shapes", "train@softmax-shapes", "train@jem-shapes",
                                 "generate@softmax-shapes", "generate@jem-shapes", "evaluate@softmax-shapes",
                                 "evaluate@jem-shapes", "report"}
    sh("git", "-c", "user.name=t", "-c", "user.email=t@t", "add", "-A", cwd=work)
    sh("git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "repro", cwd=work)
    return work


def test_second_repro_runs_nothing_and_snakemake_agrees(repo):
    second = sh("dvc", "repro", cwd=repo)
    assert ran(second.stdout) == set()
    for target in ("train_all", "all"):
        r = sh("snakemake", "-n", "--cores", "2", target, cwd=repo)
        assert "Nothing to be done" in r.stdout + r.stderr, r.stdout + r.stderr


def test_metrics_show_lists_every_run(repo):
    out = sh("dvc", "metrics", "show", cwd=repo).stdout
    for o in ("softmax", "jem"):
        assert f"data/evaluate/{o}/shapes/metrics.json" in out


def test_metrics_show_json_holds_numbers_only(repo):
    """What `dvc metrics diff` compares is numbers: names, provenance and reasons are in info.json."""
    shown = json.loads(sh("dvc", "metrics", "show", "--json", cwd=repo).stdout)
    leaves: list[tuple[str, object]] = []

    def walk(path, v):
        if isinstance(v, dict):
            for k, x in v.items():
                walk(f"{path}.{k}", x)
        elif isinstance(v, list):
            for i, x in enumerate(v):
                walk(f"{path}[{i}]", x)
        else:
            leaves.append((path, v))
    files = {f for rev in shown.values() for f in rev["data"]}
    assert {f"data/evaluate/{o}/shapes/metrics.json" for o in ("softmax", "jem")} <= files
    assert {"data/pretrain/shapes/metrics.json", "data/train/jem/shapes/summary.json"} <= files
    walk("", shown)
    bad = [(p, v) for p, v in leaves if ".data." in p and (isinstance(v, bool) or not isinstance(v, (int, float)))]
    assert len(leaves) > 20 and not bad, bad


def test_typo_stops_dvc_repro_before_any_work(repo):
    original = (repo / "params.yaml").read_text()
    try:
        p = yaml.safe_load(original)
        p["train"]["jem"]["sgld_stepz"] = 3
        write_params(repo / "params.yaml", p)
        r = sh("dvc", "repro", cwd=repo, check=False)
        assert r.returncode != 0
        assert "unknown key train.jem.sgld_stepz" in r.stdout + r.stderr
        assert ran(r.stdout) == {"params"}
        r = sh("snakemake", "-n", "--cores", "1", "all", cwd=repo, check=False)
        assert r.returncode != 0 and "unknown key train.jem.sgld_stepz" in r.stdout + r.stderr
    finally:
        (repo / "params.yaml").write_text(original)
        sh("dvc", "repro", cwd=repo)


def test_snakemake_refuses_config_overrides(repo):
    r = sh("snakemake", "-n", "--cores", "1", "all", "--config", "datasets=[cifar10]", cwd=repo, check=False)
    assert r.returncode != 0 and "overrides are refused" in r.stdout + r.stderr


def test_jem_edit_reruns_only_the_jem_branch_and_diffs_show_it(repo):
    r = sh("dvc", "exp", "run", "-S", "train.jem.sgld_std=0.02", cwd=repo)
    assert ran(r.stdout) == {"params", "train@jem-shapes", "generate@jem-shapes", "evaluate@jem-shapes", "report"}
    params_diff = sh("dvc", "params", "diff", cwd=repo).stdout
    assert "train.jem.sgld_std" in params_diff and "0.01" in params_diff and "0.02" in params_diff
    metrics_diff = sh("dvc", "metrics", "diff", "--all", cwd=repo).stdout
    assert "data/evaluate/jem/shapes/metrics.json" in metrics_diff
    assert "data/evaluate/softmax/shapes/metrics.json" not in sh("dvc", "metrics", "diff", cwd=repo).stdout


def test_pretrain_edit_reruns_only_pretraining_and_the_report(repo):
    r = sh("dvc", "exp", "run", "-S", "pretrain.temperature=0.3", cwd=repo)
    assert ran(r.stdout) == {"params", "pretrain@shapes", "report"}


def test_plots_are_declared_for_dvc_plots(repo):
    out = repo / "plots_out"
    sh("dvc", "plots", "show", "--out", str(out), cwd=repo)
    page = (out / "index.html").read_text()
    for f in ("data/train/jem/shapes/history.csv", "data/evaluate/jem/shapes/reliability.csv",
              "data/evaluate/jem/shapes/robustness/linf.csv", "data/evaluate/jem/shapes/robustness/l2.csv",
              "data/evaluate/jem/shapes/roc/textures-logpx.csv", "data/evaluate/jem/shapes/roc/noise-maxprob.csv",
              "data/pretrain/shapes/history/w0.csv", "data/pretrain/shapes/history/w1.csv"):
        assert f in page, f


def test_remote_push_then_a_fresh_clone_pulls_everything(repo, tmp_path):
    """The cluster ↔ laptop round trip through a default remote (a local folder stands in for S3/SSH)."""
    remote = tmp_path / "remote"
    sh("dvc", "remote", "add", "-d", "shared", str(remote), cwd=repo)
    try:
        sh("git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "remote", cwd=repo)
        sh("dvc", "push", cwd=repo)
        clone = tmp_path / "clone"
        sh("git", "clone", "-q", str(repo), str(clone), cwd=tmp_path)
        assert not (clone / "data/train/jem/shapes/model.pt").exists()
        sh("dvc", "pull", cwd=clone)
        assert (clone / "data/train/jem/shapes/model.pt").read_bytes() == \
            (repo / "data/train/jem/shapes/model.pt").read_bytes()
        assert (clone / "data/report/index.html").is_file()
        status = sh("dvc", "status", cwd=clone).stdout
        assert "up to date" in status, status
    finally:
        sh("dvc", "remote", "remove", "shared", cwd=repo)
        sh("git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "no remote", cwd=repo)
