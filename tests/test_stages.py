"""Every stage script on tiny settings, and parity between dvc.yaml, the Snakefile and pipeline/stages.py."""
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from ebm.checkpoint import CheckpointError, load_checkpoint
from ebm.config import OBJECTIVES
from ebm.data.procedural import SHAPE_CLASSES
from pipeline import check_params, data, evaluate, generate, pretrain, report, train
from pipeline.common import run
from pipeline.resources import log_path
from pipeline.stages import ORDER, RUN, STAGES, expand, fill, item_params, render_dvc_yaml, write_params_files
from tests.conftest import REPO, tiny_params_dict, write_params
from ebm.artifacts import read_metrics

BIN = Path(sys.executable).parent
ALL_OBJECTIVES = list(OBJECTIVES)


def test_dvc_yaml_is_rendered_from_stages():
    assert (REPO / "dvc.yaml").read_text() == render_dvc_yaml(), "run: python -m pipeline.stages > dvc.yaml"


def _dvc_expanded(p: dict):
    """dvc.yaml's stages expanded by hand for params ``p``: (name, item) → (cmd, outputs, params). A matrix
    stage has an item per objective × dataset (or dataset); a `<stage>_run` foreach one per named run."""
    doc = yaml.safe_load((REPO / "dvc.yaml").read_text())
    out = {}
    for name, st in doc["stages"].items():
        if "foreach" in st:
            assert st["foreach"] == "${runs}" and name.endswith("_run")
            base, st = name[: -len("_run")], st["do"]
            items = [{"run": k, "objective": v["objective"], "dataset": v["dataset"]} for k, v in p["runs"].items()]
        else:
            base = name
            items = [it for it in expand(STAGES[name], p) if "run" not in it or it["run"] == it["objective"]]

        def sub(s, item):
            s = s.replace("${key}", item.get("run", ""))
            return re.sub(r"\$\{item\.(\w+)\}", lambda m: item[m.group(1)], s)
        state = [fill(s, **it) for s in STAGES[base].state for it in items]
        for item in items:
            outs = []
            for key in ("outs", "metrics", "plots"):
                for o in st.get(key, []):
                    path = sub(o if isinstance(o, str) else next(iter(o)), item)
                    if path not in state:  # resume state: kept by DVC, deliberately not a Snakemake output
                        outs.append(path)
            params = [sub(x, item) if isinstance(x, str) else "*" for x in st.get("params", [])]
            out[(base, tuple(sorted(item.items())))] = (sub(st["cmd"], item), sorted(outs), params)
    return out


# two named runs beside the grid: settings that differ from the shared ones, on either dataset
NAMED = {"wide": {"objective": "softmax", "dataset": "shapes", "model": {"width": 2}},
         "jem-sgd": {"objective": "jem", "dataset": "cifar10", "train": {"common": {"optimizer": "sgd"}}}}


def test_snakefile_runs_the_same_commands_on_the_same_outputs(tmp_path):
    objectives, datasets = ["softmax", "jem"], ["shapes", "cifar10"]
    p = tiny_params_dict()
    p["objectives"], p["datasets"], p["runs"] = objectives, datasets, NAMED
    work = tmp_path / "wf"
    work.mkdir()
    for f in ("Snakefile", "pipeline", "ebm", "data/raw/shapes"):
        (shutil.copytree if (REPO / f).is_dir() else shutil.copy)(REPO / f, work / f)
    (work / "data/raw/cifar10").mkdir()  # each dataset's raw folder is an input of its data stage
    write_params(work / "params.yaml", p)
    r = subprocess.run([str(BIN / "snakemake"), "-n", "--forceall", "--printshellcmds", "--cores", "1", "all"],
                       cwd=work, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr + r.stdout
    log = r.stdout + r.stderr
    expected = _dvc_expanded(p)
    assert len(expected) == 1 + 2 + 2 + 3 * (4 + 2) + 1
    for (name, item), (cmd, outs, params) in expected.items():
        item = dict(item)
        # the same command, its output going to the job's log (Snakemake's `log:`)
        job_log = fill(log_path(name, STAGES[name].matrix), **item)
        assert f"{cmd} > {job_log} 2>&1\n" in log, f"Snakemake does not run the DVC command of {name}: {cmd}"
        assert ("--run " in cmd) == (item.get("run", item.get("objective")) in NAMED), cmd
        for o in outs:
            assert o in log, f"Snakemake does not declare output {o} of {name}"
        assert params == [s if s == "*" else fill(s, **item) for s in item_params(STAGES[name], **item)]
    # every job Snakemake plans is one DVC knows
    assert log.count("rule train:") == 6 and log.count("rule evaluate:") == 6
    assert "data/train/wide/shapes/model.pt" in log and "data/evaluate/jem-sgd/cifar10/metrics.json" in log


# The embedded default's DAG as it was before named runs existed (commit 75c950e), with the six objectives the
# default has run since issue 17: its stage items, and the commands and outputs of one run. Named runs add
# `<stage>_run` stages, which `runs: {}` expands to nothing.
DEFAULT_OBJECTIVES = ["softmax", "jem", "jempp", "sada_jem", "hdge", "hdge_jem"]
DEFAULT_ITEMS = ["params", "data@shapes", "pretrain@shapes", *[f"{s}@{o}-shapes" for s in ("train", "generate",
                 "evaluate") for o in DEFAULT_OBJECTIVES], "report"]


def test_the_default_dag_is_unchanged_by_named_runs():
    p = yaml.safe_load((REPO / "params.yaml").read_text())
    assert p["runs"] == {} and p["objectives"] == DEFAULT_OBJECTIVES and p["datasets"] == ["shapes"]
    expanded = {name + ("@" + "-".join(i[k] for k in ("objective", "dataset") if k in i) if i else ""): v
                for (name, item), v in _dvc_expanded(p).items() for i in [dict(item)]}
    assert sorted(expanded) == sorted(DEFAULT_ITEMS)
    cmd, outs, params = expanded["train@jem-shapes"]
    assert cmd == ("python -m pipeline.train --objective jem --dataset shapes --data data/datasets/shapes "
                   "--out data/train/jem/shapes --logdir logs/jem/shapes --resume-dir data/resume/jem/shapes")
    assert outs == sorted(f"data/train/jem/shapes/{f}" for f in ("model.pt", "info.json", "summary.json", "history.csv"))
    assert params == ["model", "train.common", "train.augment.shapes", "train.jem"]
    cmd, outs, params = expanded["evaluate@softmax-shapes"]
    assert cmd == ("python -m pipeline.evaluate --checkpoint data/train/softmax/shapes/model.pt --data "
                   "data/datasets/shapes --samples data/generate/softmax/shapes/samples.npz --out "
                   "data/evaluate/softmax/shapes")
    assert "data/evaluate/softmax/shapes/metrics.json" in outs and params == ["evaluate"]
    assert expanded["generate@jem-shapes"][0].endswith("--out data/generate/jem/shapes --logdir logs/jem/shapes")
    assert not any("--run" in c for c, _, _ in expanded.values())


def test_params_hash_files_follow_the_params(tmp_path):
    """Removing a named run deletes its hash files: the folder is what the params alone write, so that a
    workspace where the run once existed and a fresh clone agree (DVC hashes the folder as one output)."""
    p = tiny_params_dict()
    p["runs"] = {"wide": {"objective": "softmax", "dataset": "shapes", "model": {"width": 2}}}
    folder = tmp_path / "hash"
    write_params_files(p, str(folder))
    wide = sorted(str(f.relative_to(folder)) for f in folder.rglob("*.sha256") if "wide" in f.parts)
    assert len(wide) == 3, wide  # its train, generate and evaluate items
    kept = folder / "train/jem/shapes.sha256"
    mtime = kept.stat().st_mtime_ns
    del p["runs"]["wide"]
    assert write_params_files(p, str(folder)) == [str(folder / "report.sha256")]  # the report lists the runs
    fresh = tmp_path / "fresh"
    write_params_files(p, str(fresh))
    assert _listing(folder) == _listing(fresh) and kept.stat().st_mtime_ns == mtime


def _listing(folder: Path) -> list[str]:
    return sorted(str(f.relative_to(folder)) for f in folder.rglob("*"))


def test_dvc_params_sections_match_stages():
    doc = yaml.safe_load((REPO / "dvc.yaml").read_text())
    for name in ORDER:
        dvc_params = doc["stages"][name].get("params", [])
        if STAGES[name].params == ["*"]:
            assert dvc_params == [{"params.yaml": None}]
        else:
            assert [p.replace("${item.objective}", "{objective}").replace("${item.dataset}", "{dataset}")
                    for p in dvc_params] == STAGES[name].params
        if STAGES[name].matrix == RUN:  # the named runs' twin: the same sections, and the run's own entry
            named = doc["stages"][f"{name}_run"]["do"].get("params", [])
            assert named == [*dvc_params, "runs.${key}"]


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EBM_NO_PROGRESS", "1")
    monkeypatch.setenv("EBM_OFFLINE", "1")  # IS/FID must report "not computed", not try a download
    p = tiny_params_dict()
    p["objectives"] = ALL_OBJECTIVES
    write_params(tmp_path / "params.yaml", p)
    return tmp_path


def _ok(main, *args):
    assert run(main, list(args)) == 0


def test_every_stage_script_on_tiny_settings(workdir):
    _ok(check_params.main, "--out", "data/params/validated.txt")
    _ok(data.main, "--dataset", "shapes", "--out", "data/datasets/shapes")
    _ok(pretrain.main, "--dataset", "shapes", "--data", "data/datasets/shapes", "--out", "data/pretrain/shapes",
        "--logdir", "logs/pretrain/shapes")
    for obj in ALL_OBJECTIVES:
        _ok(train.main, "--objective", obj, "--dataset", "shapes", "--data", "data/datasets/shapes",
            "--out", f"data/train/{obj}/shapes", "--logdir", f"logs/{obj}/shapes", "--log-every", "2",
            "--resume-dir", f"data/resume/{obj}/shapes", "--checkpoint-every", "2")
        assert not Path(f"data/resume/{obj}/shapes/state.pt").exists()  # dropped once outputs are written
        _ok(generate.main, "--checkpoint", f"data/train/{obj}/shapes/model.pt", "--data", "data/datasets/shapes",
            "--out", f"data/generate/{obj}/shapes", "--logdir", f"logs/{obj}/shapes")
        _ok(evaluate.main, "--checkpoint", f"data/train/{obj}/shapes/model.pt", "--data", "data/datasets/shapes",
            "--samples", f"data/generate/{obj}/shapes/samples.npz", "--out", f"data/evaluate/{obj}/shapes")
    _ok(report.main, "--out", "data/report")

    # train: checkpoint loads with weights_only, history has every loss term, TensorBoard has scalars
    model, ckpt = load_checkpoint("data/train/jem/shapes/model.pt")
    assert ckpt["meta"]["objective"] == "jem" and ckpt["objective_state"]["buffer"]["buffer"].shape == (64, 3, 32, 32)
    header = Path("data/train/jem/shapes/history.csv").read_text().splitlines()[0].split(",")
    assert {"step", "loss", "ce", "px", "acc", "e_data", "e_sample", "lr"} <= set(header)
    assert any(Path("logs/jem/shapes").glob("events.out.tfevents.*"))
    # generate
    s = np.load("data/generate/jem/shapes/samples.npz")
    assert s["fresh"].shape == (8, 32, 32, 3) and s["fresh"].dtype == np.uint8
    assert s["cond"].shape == (len(SHAPE_CLASSES), 32, 32, 3) and s["cond_y"].tolist() == list(range(len(SHAPE_CLASSES)))
    assert s["buffer"].shape == (8, 32, 32, 3)  # the replay buffer, kept in the checkpoint
    assert "buffer" not in np.load("data/generate/softmax/shapes/samples.npz")  # no buffer without SGLD training
    assert {p.name for p in Path("data/generate/jem/shapes/grids").iterdir()} == {"fresh.png", "cond.png", "buffer.png",
                                                                                  "captions.json"}
    assert {p.name for p in Path("data/generate/softmax/shapes/grids").iterdir()} == {"fresh.png", "cond.png",
                                                                                      "captions.json"}
    captions = {o: json.loads(Path(f"data/generate/{o}/shapes/grids/captions.json").read_text())
                for o in ("jem", "jempp", "softmax")}  # each grid names the sampler that made it
    assert captions["jem"]["fresh"].startswith("jem sampler: SGLD") and "U(-1, 1)" in captions["jem"]["fresh"]
    assert "class-Gaussian init" in captions["jempp"]["fresh"] and "grad clip" in captions["jempp"]["fresh"]
    assert "softmax trains no sampler" in captions["softmax"]["fresh"]
    assert Path("data/generate/jem/shapes/grids/cond.png").read_bytes()[:4] == b"\x89PNG"
    assert read_metrics(Path("data/train/jem/shapes/summary.json"))["params"]["train.jem"]["sgld_steps"] == 2
    # evaluate: metrics + provenance
    m = read_metrics(Path("data/evaluate/jem/shapes/metrics.json"))
    assert 0 <= m["accuracy"] <= 1 and 0 <= m["ece"] <= 1 and m["n_test"] == 100
    assert set(m["ood_auroc"]) == {"textures", "noise"}
    assert set(m["ood_auroc"]["noise"]) == {"logpx", "maxprob", "pxgrad"}
    assert {"params_hash", "git_revision", "torch_version", "device", "seed"} <= set(m["provenance"])
    rob = m["robustness"]
    assert set(rob["linf"]) == {"0", "8"} and set(rob["l2"]) == {"0", "100"} and rob["n_images"] == 16
    assert rob["linf"]["8"] <= rob["linf"]["0"] == rob["l2"]["0"]
    q = m["sample_quality"]  # EBM_OFFLINE=1 in these tests: never a number without the Inception weights
    assert set(q) == {"fresh", "buffer"} and q["fresh"]["fid"] is None and q["fresh"]["reason"]
    # plots: one series per file, so that `dvc plots` draws one line each
    assert {f.name for f in Path("data/evaluate/jem/shapes/robustness").iterdir()} == {"linf.csv", "l2.csv"}
    assert Path("data/evaluate/jem/shapes/robustness/linf.csv").read_text().startswith("eps,accuracy\n0,")
    roc = {f.name for f in Path("data/evaluate/jem/shapes/roc").iterdir()}
    assert roc == {f"{s}-{k}.csv" for s in ("textures", "noise") for k in ("logpx", "maxprob", "pxgrad")}
    assert Path("data/evaluate/jem/shapes/roc/textures-logpx.csv").read_text().startswith("fpr,tpr\n0,0\n")
    assert {f.name for f in Path("data/pretrain/shapes/history").iterdir()} == {"w0.csv", "w0.5.csv", "w1.csv"}
    assert {line.split(",")[0] for line in Path("data/pretrain/shapes/history/w0.5.csv").read_text().splitlines()[1:]} == {"0.5"}
    # pretrain: one model and one metrics entry per loss weight
    pm = read_metrics(Path("data/pretrain/shapes/metrics.json"))
    assert set(pm["runs"]) == {"w0", "w0.5", "w1"}
    assert {"linear_probe_accuracy", "test_bpd", "ood_auroc", "corruption_accuracy"} <= set(pm["runs"]["w0.5"])
    assert {p.name for p in Path("data/pretrain/shapes/models").iterdir()} == {"w0.pt", "w0.5.pt", "w1.pt"}
    # report: one table row per run, every image present
    html = Path("data/report/index.html").read_text()
    results = re.search(r"<table id='results-shapes'>.*?</table>", html).group(0)
    assert re.findall(r"<tr data-run='([^']+)'>", results) == [f"{o}/shapes" for o in ALL_OBJECTIVES]
    assert "<table id='pretrain-shapes'>" in html
    for img in re.findall(r"<img src='([^']+)'", html):
        assert (Path("data/report") / img).is_file()
    assert "| jem | shapes |" in Path("data/report/report.md").read_text()
    hdge_header = Path("data/train/hdge_jem/shapes/history.csv").read_text().splitlines()[0].split(",")
    assert {"ce", "contrast", "px", "e_data", "e_sample"} <= set(hdge_header)


def test_corrupt_checkpoint_is_named_and_nothing_written(workdir):
    bad = Path("model.pt")
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="model.pt: cannot be read"):
        load_checkpoint(bad)
    assert run(generate.main, ["--checkpoint", "model.pt", "--data", "data/datasets/shapes", "--out", "gen"]) == 2
    assert not Path("gen").exists()


def test_divergence_stops_with_named_error_and_no_output(workdir):
    p = tiny_params_dict()
    p["train"]["common"]["diverge_threshold"] = 1e-3  # any real loss "diverges" at the first log
    write_params(Path("params.yaml"), p)
    _ok(data.main, "--dataset", "shapes", "--out", "data/datasets/shapes")
    r = subprocess.run([sys.executable, "-m", "pipeline.train", "--objective", "softmax", "--dataset", "shapes",
                        "--data", "data/datasets/shapes", "--out", "data/train/softmax/shapes"],
                       capture_output=True, text=True, cwd=workdir, env={"PYTHONPATH": str(REPO), "EBM_NO_PROGRESS": "1",
                                                                       "PATH": "/usr/bin:/bin"})
    assert r.returncode == 2, r.stderr
    assert "training diverged at step 0" in r.stderr
    assert not Path("data/train/softmax/shapes").exists()


def test_model_runs_on_requested_device(workdir):
    """--device picks where the model lives and runs: a checkpoint loads onto it and its outputs are there."""
    from ebm.checkpoint import save_checkpoint
    from ebm.config import parse_params
    from ebm.models import build_model
    from ebm.provenance import pick_device

    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            pick_device("cuda")
    cfg = parse_params(tiny_params_dict()).model
    save_checkpoint("m.pt", build_model(cfg, 3), model_cfg=cfg, classes=["a", "b", "c"], meta={})
    for name in ["cpu"] + (["cuda"] if torch.cuda.is_available() else []):
        dev = pick_device(name)
        model, _ = load_checkpoint("m.pt", dev)
        assert {p.device.type for p in model.parameters()} == {dev.type}
        assert model(torch.zeros(2, 3, 32, 32, device=dev)).device.type == dev.type
