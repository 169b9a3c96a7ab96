"""The pipeline under DVC and Snakemake in a scratch git repository, on tiny settings.

Checks what a user relies on: a second `dvc repro` runs nothing, Snakemake then has nothing to do,
editing one train.jem parameter reruns only the JEM branch, metrics and params diffs, and a typo in
params.yaml stops `dvc repro` before any work. Beside the grid (softmax, jem on shapes) runs one named run
whose model width and optimizer differ: one `dvc repro` trains it too, and (slow test) editing it reruns it
alone, not a second named run.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from ebm.artifacts import read_metrics
from tests.conftest import copy_from_repo, tiny_params_dict, write_params

BIN = Path(sys.executable).parent


def sh(*cmd, cwd, check=True):
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "EBM_NO_PROGRESS": "1", "EBM_OFFLINE": "1"}
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return r


def ran(out: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", out))


NAMED, OTHER = "wide-sgd", "slow_lr"  # the fixture's named run; the slow test adds OTHER, which must not rerun


def run_stages(*names: str) -> set[str]:
    return {f"{s}_run@{n}" for s in ("train", "generate", "evaluate") for n in names}


def run_folders(name: str) -> set[str]:
    """The folders the stage table writes for run ``name``: outputs, resume state and --logdir."""
    from pipeline.stages import STAGES
    paths = [p for s in STAGES.values() for p in [*s.declared_outputs(), *s.state, *s.cmd.split()]]
    return {p.split("/{run}/")[0] + f"/{name}" for p in paths if "/{run}/" in p}


def commit_all(work: Path, message: str) -> None:
    sh("git", "-c", "user.name=t", "-c", "user.email=t@t", "add", "-A", cwd=work)
    sh("git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", message, cwd=work)


def scratch_repo(work: Path, params: dict) -> Path:
    """What a fresh clone has (data/raw/shapes: the procedural dataset's git-tracked raw folder), in git."""
    copy_from_repo(work, ("Snakefile", "dvc.yaml", ".dvcignore", ".gitignore", "pipeline", "ebm", "envs", ".dvc", "data/raw/shapes"))
    write_params(work / "params.yaml", params)
    sh("git", "init", "-q", cwd=work)
    commit_all(work, "init")
    return work


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    p = tiny_params_dict()
    p["runs"] = {NAMED: {"objective": "softmax", "dataset": "shapes", "model": {"width": 2},
                         "train": {"common": {"optimizer": "sgd", "lr": 0.01}}}}
    work = scratch_repo(tmp_path_factory.mktemp("pipeline"), p)
    first = sh("dvc", "repro", cwd=work)
    assert (work / "data/report/index.html").is_file()
    assert ran(first.stdout) == {"params", "data@shapes", "pretrain@shapes", "train@softmax-shapes", "train@jem-shapes",
                                 "generate@softmax-shapes", "generate@jem-shapes", "evaluate@softmax-shapes",
                                 "evaluate@jem-shapes", "report", *run_stages(NAMED)}
    commit_all(work, "repro")
    return work


def test_second_repro_runs_nothing_and_snakemake_agrees(repo):
    second = sh("dvc", "repro", cwd=repo)
    assert ran(second.stdout) == set()
    for target in ("train_all", "all"):
        r = sh("snakemake", "-n", "--cores", "2", target, cwd=repo)
        assert "Nothing to be done" in r.stdout + r.stderr, r.stdout + r.stderr


def test_metrics_show_lists_every_run(repo):
    out = sh("dvc", "metrics", "show", cwd=repo).stdout
    for o in ("softmax", "jem", NAMED):
        assert f"data/evaluate/{o}/shapes/metrics.json" in out


def test_a_named_run_trains_beside_the_grid_and_the_report_shows_its_params(repo):
    """The acceptance case: one `dvc repro` trained the grid's softmax and the named run whose model width and
    optimizer differ; each is its own row in the report, and the params table shows how they differ."""
    wide = read_metrics(repo / f"data/train/{NAMED}/shapes/summary.json")["params"]
    grid = read_metrics(repo / "data/train/softmax/shapes/summary.json")["params"]
    assert (wide["model"]["width"], wide["train.common"]["optimizer"]) == (2, "sgd")
    assert (grid["model"]["width"], grid["train.common"]["optimizer"]) == (1, "adam")
    html = (repo / "data/report/index.html").read_text()
    results = re.search(r"<table id='results-shapes'>.*?</table>", html, re.S).group(0)
    assert re.findall(r"<tr data-run='([^']+)'>", results) == ["softmax/shapes", "jem/shapes", f"{NAMED}/shapes"]
    diff = re.search(r"<table id='params-diff'>.*?</table>", html, re.S).group(0)
    header = re.findall(r"<th>([^<]+)</th>", diff)
    assert {"model.width", "train.common.optimizer"} <= set(header)
    row = re.search(rf"<tr data-run='{NAMED}/shapes'>(.*?)</tr>", diff, re.S).group(1)
    cells = re.findall(r"<td>([^<]*)</td>", row)
    assert cells[header.index("model.width")] == "2" and cells[header.index("train.common.optimizer")] == "&quot;sgd&quot;"


@pytest.mark.slow  # 2 minutes; make test keeps test_pretrain_edit_reruns_only_pretraining_and_the_report
def test_editing_one_named_run_reruns_only_that_run(repo):
    original = (repo / "params.yaml").read_text()
    try:
        p = yaml.safe_load(original)  # a second named run first, trained beside the first
        p["runs"][OTHER] = {"objective": "softmax", "dataset": "shapes", "train": {"common": {"lr": 0.002}}}
        write_params(repo / "params.yaml", p)
        assert ran(sh("dvc", "repro", cwd=repo).stdout) == {"params", "report", *run_stages(OTHER)}
        p["runs"][NAMED]["train"]["common"]["lr"] = 0.02
        write_params(repo / "params.yaml", p)
        edited = run_stages(NAMED)
        status = json.loads(sh("dvc", "status", "--json", cwd=repo).stdout)
        assert set(status) == {"params", "report", *edited}, status
        plan = sh("snakemake", "-n", "--cores", "1", "all", cwd=repo)
        jobs = re.findall(r"^rule (\w+):\n(?:    .*\n)*?    wildcards: run=([\w.-]+)", plan.stdout, re.M)
        assert set(jobs) == {(s, NAMED) for s in ("train", "generate", "evaluate")}, plan.stdout
        assert ran(sh("dvc", "repro", cwd=repo).stdout) == {"params", "report", *edited}
    finally:  # as before the test: DVC leaves a removed stage's outputs and its dvc.lock entries
        (repo / "params.yaml").write_text(original)
        for folder in run_folders(OTHER):
            shutil.rmtree(repo / folder, ignore_errors=True)
        sh("git", "checkout", "--", "dvc.lock", cwd=repo)
        sh("dvc", "repro", cwd=repo)


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


@pytest.mark.slow  # 70 s; make test keeps test_pretrain_edit_reruns_only_pretraining_and_the_report
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


# ----------------------------------------------------------------------------------------------------
# Raw data: data/raw/<dataset> is an input of that dataset's data stage, shared through DVC by `dvc add`

def fake_cifar10(raw: Path, colour: int) -> None:
    """A tiny local-source cifar10 (two classes of 32×32 PNGs) as train.tar.gz and test.tar.gz."""
    from tests.test_data import _make_archive, _png

    members = [(f"{c}/{i}.png", _png((colour, 40 * k, 10 * i))) for k, c in enumerate(["cat", "plane"]) for i in range(3)]
    raw.mkdir(parents=True, exist_ok=True)
    _make_archive(raw / "train.tar.gz", members)
    _make_archive(raw / "test.tar.gz", members[:2] + members[3:5])


@pytest.fixture(scope="module")
def raw_repo(tmp_path_factory):
    """shapes and a tiny local cifar10 tracked with `dvc add`, their data stages run and committed."""
    p = tiny_params_dict()
    p["datasets"] = ["shapes", "cifar10"]
    p["data"]["cifar10"].update(source="local", n_train=0, n_test=0, n_ood=4, ood=["interp"])
    work = scratch_repo(tmp_path_factory.mktemp("raw"), p)
    fake_cifar10(work / "data/raw/cifar10", colour=0)
    sh("dvc", "add", "data/raw/cifar10", cwd=work)
    assert ran(sh("dvc", "repro", "data@shapes", "data@cifar10", cwd=work).stdout) == {
        "params", "data@shapes", "data@cifar10"}
    commit_all(work, "raw data, datasets")
    assert "data/raw/cifar10.dvc" in sh("git", "ls-files", "data/raw", cwd=work).stdout.split()
    return work


def changed_data_stages(work: Path) -> dict:
    """`dvc status` of the data stages and the raw data's .dvc files (the later stages never ran here)."""
    status = json.loads(sh("dvc", "status", "--json", cwd=work).stdout)
    return {k: v for k, v in status.items() if k.startswith(("data@", "data/raw/"))}


def restore(work: Path) -> None:
    sh("git", "checkout", "--", ".", cwd=work)
    sh("dvc", "checkout", "--force", cwd=work, check=False)  # later stages never ran: no outputs to restore
    assert changed_data_stages(work) == {}


def test_replacing_a_raw_file_reruns_that_datasets_data_stage_only(raw_repo):
    assert changed_data_stages(raw_repo) == {}
    try:
        fake_cifar10(raw_repo / "data/raw/cifar10", colour=255)  # new train.tar.gz and test.tar.gz
        assert changed_data_stages(raw_repo) == {
            "data/raw/cifar10.dvc": [{"changed outs": {"data/raw/cifar10": "modified"}}],
            "data@cifar10": [{"changed deps": {"data/raw/cifar10": "modified"}}]}
        r = sh("dvc", "repro", "data@shapes", "data@cifar10", cwd=raw_repo)
        assert ran(r.stdout) == {"data@cifar10"}
        assert changed_data_stages(raw_repo) == {}  # repro also recorded the new files in data/raw/cifar10.dvc
        changed = sh("git", "status", "--porcelain", cwd=raw_repo).stdout.split()
        assert "data/raw/cifar10.dvc" in changed and "dvc.lock" in changed
        x = np.load(raw_repo / "data/datasets/cifar10/train_x.npy")
        assert (x[..., 0] == 255).all()
    finally:
        restore(raw_repo)


def test_shapes_needs_no_raw_files(raw_repo):
    """The procedural set's raw folder is git's (a README): a fresh clone makes it with no data/raw of its own."""
    assert sh("git", "ls-files", "data/raw/shapes", cwd=raw_repo).stdout.split() == ["data/raw/shapes/README.md"]
    manifest = json.loads((raw_repo / "data/datasets/shapes/manifest.json").read_text())
    assert manifest["raw_files_sha256"] == {}


def applied_ood_count(work: Path, exp: str) -> int:
    """The size of cifar10's interp OOD set in experiment ``exp``'s dataset, applied to the workspace."""
    # apply stops on the outputs of the later stages, never run here, after it wrote what it has
    sh("dvc", "exp", "apply", exp, cwd=work, check=False)
    sh("dvc", "checkout", "data@cifar10", cwd=work)  # the experiment's dataset is in the cache
    manifest = json.loads((work / "data/datasets/cifar10/manifest.json").read_text())
    assert "cifar10/train.tar.gz" in manifest["raw_files_sha256"]
    return manifest["counts"]["ood_interp"]


@pytest.mark.slow  # the queue test (slow) runs the same workspaces
def test_an_experiment_in_a_temporary_workspace_finds_the_raw_data(raw_repo):
    """`dvc exp run --temp` (and every queued experiment) runs in a temporary git workspace, without
    git-ignored files: DVC checks data/raw/cifar10 out of its cache there because `dvc add` tracks it."""
    try:
        sh("dvc", "exp", "run", "--temp", "-n", "temp3", "-S", "data.cifar10.n_ood=3", "data@cifar10", cwd=raw_repo)
        assert applied_ood_count(raw_repo, "temp3") == 3
    finally:
        sh("dvc", "exp", "remove", "--all-commits", cwd=raw_repo, check=False)
        restore(raw_repo)


QUEUE_DONE = ("Success", "Failed")


def queue_status(work: Path) -> dict[str, str]:
    """Experiment name → status, from `dvc queue status`'s table (Task, Name, Created, Status)."""
    rows = sh("dvc", "queue", "status", cwd=work).stdout.splitlines()
    return {m.group(1): m.group(2) for r in rows if (m := re.match(r"[0-9a-f]{7}\s+(\S+)\s.*\s(\w+)$", r))}


@pytest.mark.slow  # a minute: Celery workers
def test_queued_experiments_on_a_local_source_run_two_at_a_time(raw_repo):
    """The README's `dvc exp run --queue` + `dvc queue start -j 2` on the local-source cifar10."""
    names = {f"ood{n}": n for n in (1, 2)}  # not 3: DVC's run cache would restore the --temp test's run
    try:
        for name, n in names.items():
            sh("dvc", "exp", "run", "--queue", "-n", name, "-S", f"data.cifar10.n_ood={n}", "data@cifar10",
               cwd=raw_repo)
        sh("dvc", "queue", "start", "-j", "2", cwd=raw_repo)
        deadline = time.monotonic() + 900  # only against a hang; the two runs take seconds
        while not all(queue_status(raw_repo).get(name) in QUEUE_DONE for name in names):
            assert time.monotonic() < deadline, sh("dvc", "queue", "status", cwd=raw_repo).stdout
            time.sleep(2)
        for name, n in names.items():
            log = sh("dvc", "queue", "logs", name, cwd=raw_repo).stdout
            assert f"'ood_interp': {n}}}" in log, log
        assert queue_status(raw_repo) == {name: "Success" for name in names}
        assert applied_ood_count(raw_repo, "ood2") == 2
    finally:
        sh("dvc", "queue", "stop", cwd=raw_repo, check=False)
        sh("dvc", "queue", "remove", "--all", cwd=raw_repo, check=False)
        sh("dvc", "exp", "remove", "--all-commits", cwd=raw_repo, check=False)
        restore(raw_repo)
