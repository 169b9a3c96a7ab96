"""Faults a hostile or careless user causes (issue 16): each is refused with one line, or harmless."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ebm import env
from pipeline import train
from pipeline.common import run
from tests.conftest import REPO, tiny_params_dict, write_params
from ebm.artifacts import read_metrics


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for var in ("EBM_BF16", "EBM_CHANNELS_LAST", "EBM_DEVICE", "EBM_CHECKPOINT_EVERY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("EBM_NO_PROGRESS", "1")
    monkeypatch.setenv("EBM_OFFLINE", "1")
    p = tiny_params_dict()
    p["objectives"], p["datasets"] = ["softmax"], ["shapes"]
    write_params(tmp_path / "params.yaml", p)
    return tmp_path


def _one_line_error(capsys, code: int, *needles: str) -> str:
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for n in needles:
        assert n in err, err
    return err


def _data(workdir) -> Path:
    from pipeline import data
    assert run(data.main, ["--dataset", "shapes", "--out", "data/datasets/shapes"]) == 0
    return workdir / "data/datasets/shapes"


def _train_args(*extra: str) -> list[str]:
    return ["--objective", "softmax", "--dataset", "shapes", "--data", "data/datasets/shapes",
            "--out", "data/train/softmax/shapes", *extra]


# 1 ---------------------------------------------------------------------------------------------------

def test_logdir_keeps_a_users_files(tmp_path):
    from ebm.history import TensorBoardLogger
    logdir = tmp_path / "notes"
    (logdir / "sub").mkdir(parents=True)
    (logdir / "thesis.md").write_text("years of work")
    (logdir / "sub" / "more.txt").write_text("more")
    old = logdir / "events.out.tfevents.1.host.1.0"
    old.write_bytes(b"old run")
    tb = TensorBoardLogger(logdir, fresh=True)
    tb({"step": 0, "loss": 1.0})
    tb.close()
    assert (logdir / "thesis.md").read_text() == "years of work"
    assert (logdir / "sub" / "more.txt").is_file()
    assert not old.exists()  # the previous run's events are replaced
    assert len(list(logdir.glob("events.out.tfevents.*"))) == 1


# 3 ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("value,expected", [("", False), ("0", False), ("false", False), ("No", False),
                                            ("OFF", False), ("1", True), ("true", True), ("yes", True),
                                            ("on", True)])
def test_env_flag_values(monkeypatch, value, expected):
    monkeypatch.setenv("EBM_BF16", value)
    assert env.flag("EBM_BF16") is expected


def test_env_flag_rejects_unclear_values(monkeypatch):
    monkeypatch.setenv("EBM_CHANNELS_LAST", "maybe")
    with pytest.raises(env.UsageError, match="EBM_CHANNELS_LAST='maybe'"):
        env.flag("EBM_CHANNELS_LAST")


def test_env_flags_off_means_off_and_are_recorded(workdir, monkeypatch):
    _data(workdir)
    monkeypatch.setenv("EBM_BF16", "0")
    monkeypatch.setenv("EBM_CHANNELS_LAST", "false")
    monkeypatch.setenv("EBM_NO_PROGRESS", "off")
    assert run(train.main, _train_args()) == 0
    summary = read_metrics(workdir / "data/train/softmax/shapes/summary.json")
    assert summary["provenance"]["bf16"] is False and summary["provenance"]["channels_last"] is False
    import torch
    meta = torch.load(workdir / "data/train/softmax/shapes/model.pt", weights_only=True)["meta"]
    assert meta["bf16"] is False and meta["channels_last"] is False
    monkeypatch.setenv("EBM_CHANNELS_LAST", "1")
    assert run(train.main, _train_args()) == 0
    summary = read_metrics(workdir / "data/train/softmax/shapes/summary.json")
    assert summary["provenance"]["channels_last"] is True


def test_no_progress_zero_shows_bars(monkeypatch):
    from pipeline.common import base_parser
    monkeypatch.setenv("EBM_NO_PROGRESS", "0")
    assert base_parser("x").parse_args([]).no_progress is False
    monkeypatch.setenv("EBM_NO_PROGRESS", "1")
    assert base_parser("x").parse_args([]).no_progress is True


def test_bad_env_flag_is_one_line(workdir, monkeypatch, capsys):
    monkeypatch.setenv("EBM_BF16", "sure")
    _one_line_error(capsys, run(train.main, _train_args()), "EBM_BF16='sure'")


# 12 --------------------------------------------------------------------------------------------------

def test_unknown_device_variable_is_one_line(workdir, monkeypatch, capsys):
    monkeypatch.setenv("EBM_DEVICE", "tpu")
    _one_line_error(capsys, run(train.main, _train_args()), "EBM_DEVICE='tpu'", "cpu, cuda")


def test_unknown_device_flag_is_one_line(workdir, capsys):
    _one_line_error(capsys, run(train.main, _train_args("--device", "gpu0")), "--device='gpu0'", "cpu, cuda")


def test_cuda_on_a_machine_without_one_is_one_line(workdir, capsys):
    import torch
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    _data(workdir)
    _one_line_error(capsys, run(train.main, _train_args("--device", "cuda")), "no CUDA device", "--device")


# 14 --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["0", "-3", "abc"])
def test_checkpoint_every_flag_must_be_positive(workdir, capsys, value):
    with pytest.raises(SystemExit) as e:
        train.main(_train_args("--checkpoint-every", value))
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and len(err.splitlines()) == 1 and "--checkpoint-every" in err, err


def test_checkpoint_every_variable_must_be_positive_and_help_still_works(workdir, monkeypatch, capsys):
    monkeypatch.setenv("EBM_CHECKPOINT_EVERY", "abc")
    with pytest.raises(SystemExit) as e:
        train.main(["--help"])
    assert e.value.code == 0 and "--checkpoint-every" in capsys.readouterr().out
    _one_line_error(capsys, run(train.main, _train_args()), "EBM_CHECKPOINT_EVERY='abc'", "positive integer")


# 9, 10 -----------------------------------------------------------------------------------------------

def _png() -> bytes:
    import io

    from PIL import Image
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (1, 2, 3)).save(buf, format="PNG")
    return buf.getvalue()


def _archive(path: Path, members: list[tuple[str, bytes | None]]) -> None:
    import io
    import tarfile
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


@pytest.mark.parametrize("line", ["not-a-digest  train.tar.gz", "0" * 64, "g" * 64 + "  train.tar.gz"])
def test_malformed_sha256sums_line_is_named(tmp_path, line):
    from ebm.data.sources import DatasetFormatError, load_local
    _archive(tmp_path / "train.tar.gz", [("a/0.png", _png())])
    (tmp_path / "SHA256SUMS").write_text("\n" + line + "\n")
    with pytest.raises(DatasetFormatError, match=r"SHA256SUMS, line 2: expected"):
        load_local("ds", tmp_path, train=True)


def test_empty_class_folder_is_an_error(tmp_path):
    from ebm.data.sources import DatasetFormatError, load_local
    for c in ("a", "b", "c"):
        (tmp_path / "test" / c).mkdir(parents=True)
    (tmp_path / "test" / "a" / "0.png").write_bytes(_png())
    (tmp_path / "test" / "c" / "0.png").write_bytes(_png())
    (tmp_path / "test" / "b" / "notes.txt").write_text("no images here")
    with pytest.raises(DatasetFormatError, match=r"class folder\(s\) without images: b \("):
        load_local("ds", tmp_path, train=False)


def test_empty_class_folder_in_an_archive_is_an_error(tmp_path):
    from ebm.data.sources import DatasetFormatError, load_local
    _archive(tmp_path / "train.tar.gz", [("train", None), ("train/a", None), ("train/a/0.png", _png()),
                                         ("train/dog", None), ("train/c/0.png", _png())])
    with pytest.raises(DatasetFormatError, match=r"without images: train/dog \("):
        load_local("ds", tmp_path, train=True)
    _archive(tmp_path / "train.tar.gz", [("train", None), ("train/a", None), ("train/a/0.png", _png())])
    assert load_local("ds", tmp_path, train=True).classes == ["a"]  # the folder above classes is fine


# 13 --------------------------------------------------------------------------------------------------

def test_full_disk_is_one_line_and_leaves_nothing(workdir, monkeypatch, capsys):
    import errno

    import ebm.io
    from pipeline import data

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(ebm.io.os, "fsync", full)
    code = run(data.main, ["--dataset", "shapes", "--out", "data/datasets/shapes"])
    _one_line_error(capsys, code, "error: writing data/datasets/shapes: No space left on device")
    assert list((workdir / "data/datasets").iterdir()) == []  # no temporary folder, no partial output


# 15 --------------------------------------------------------------------------------------------------

def test_markdown_report_is_escaped(tmp_path):
    from ebm.report import write_report
    from pipeline.stages import report_inputs
    from tests.test_report import make_tree
    make_tree(tmp_path / "data")
    evil = "<img src=x onerror=alert(1)>"
    m = tmp_path / "data/evaluate/jem/shapes/metrics.json"
    metrics = json.loads(m.read_text())
    metrics["sample_quality"]["fresh"]["reason"] = evil
    m.write_text(json.dumps(metrics))
    (tmp_path / "report").mkdir()
    write_report(tmp_path, tmp_path / "report", [{"run": "jem", "objective": "jem", "dataset": "shapes"}], ["shapes"], inputs=report_inputs(), provenance={"p": evil})
    page, text = (tmp_path / "report/index.html").read_text(), (tmp_path / "report/report.md").read_text()
    assert "&lt;img src=x onerror=alert(1)&gt;" in page and "<img src=x" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in text.split("## Provenance")[0]
    assert "<img" not in text.split("## Provenance")[0]  # the provenance is a code block: shown, not rendered


# housekeeping ----------------------------------------------------------------------------------------

def test_resume_state_is_ignored_by_git():
    r = subprocess.run(["git", "check-ignore", "-q", "data/resume/jem/shapes/state.pt"], cwd=REPO)
    assert r.returncode == 0, "data/resume/ state files must be in .gitignore"
    rank = subprocess.run(["git", "check-ignore", "-q", "data/resume/jem/shapes/state.rank1-of2.step5.pt"], cwd=REPO)
    assert rank.returncode == 0, "per-rank resume states must be in .gitignore"


def test_make_clean_removes_every_stage_output():
    r = subprocess.run(["make", "-n", "clean"], cwd=REPO, capture_output=True, text=True, check=True)
    removed = r.stdout.split()
    for folder in ("data/pretrain", "data/resume", "data/generate", "data/train", "data/evaluate", "data/report"):
        assert folder in removed, folder


# 2 ---------------------------------------------------------------------------------------------------

def _killed_after_first_resume_state(monkeypatch) -> None:
    """Make the next train run stop (as Ctrl-C would) right after it wrote its first resume state."""
    class Killed(train.ResumeStore):
        def save(self, trainer_state: dict) -> None:
            super().save(trainer_state)
            raise KeyboardInterrupt
    monkeypatch.setattr(train, "ResumeStore", Killed)


def _interrupted_softmax_run(workdir, monkeypatch) -> list[str]:
    """Make the data, then a softmax train run stopped right after its first resume state; its args."""
    _data(workdir)
    args = _train_args("--resume-dir", "data/resume/softmax/shapes", "--checkpoint-every", "2")
    with monkeypatch.context() as m:
        _killed_after_first_resume_state(m)
        assert run(train.main, args) == 130
    return args


def test_resume_state_is_not_used_on_other_data(workdir, monkeypatch, capsys):
    args = _interrupted_softmax_run(workdir, monkeypatch)
    assert (workdir / "data/resume/softmax/shapes/state.pt").is_file()
    p = tiny_params_dict()
    p["objectives"], p["datasets"] = ["softmax"], ["shapes"]
    p["data"]["shapes"]["seed"] += 1  # other data, same train params
    write_params(workdir / "params.yaml", p)
    _data(workdir)
    capsys.readouterr()
    assert run(train.main, args) == 0
    assert "starting fresh" in capsys.readouterr().out
    summary = read_metrics(workdir / "data/train/softmax/shapes/summary.json")
    assert summary["resumed_from_step"] is None
    manifest = workdir / "data/datasets/shapes/manifest.json"
    from ebm.io import sha256_file
    assert summary["provenance"]["dataset_manifest_sha256"] == sha256_file(manifest)
    assert len(summary["provenance"]["code_sha256"]) == 64


def test_resume_state_is_used_on_the_same_inputs_and_not_after_a_code_change(workdir, monkeypatch, capsys):
    args = _interrupted_softmax_run(workdir, monkeypatch)
    with monkeypatch.context() as m:  # other code: the digest differs
        m.setattr(train, "code_digest", lambda stage: "0" * 64)
        _killed_after_first_resume_state(m)
        assert run(train.main, args) == 130
        assert "starting fresh" in capsys.readouterr().out
    assert run(train.main, args) == 0
    assert "starting fresh" in capsys.readouterr().out
    with monkeypatch.context() as m:
        _killed_after_first_resume_state(m)
        assert run(train.main, args) == 130
    assert run(train.main, args) == 0
    summary = read_metrics(workdir / "data/train/softmax/shapes/summary.json")
    assert summary["resumed_from_step"] == 2


def test_a_run_killed_while_writing_its_outputs_redoes_no_training(workdir, monkeypatch, capsys):
    """A SLURM time limit can strike after the last step: the retry finds the last step's state."""
    import torch
    _data(workdir)
    args = _train_args("--resume-dir", "data/resume/softmax/shapes", "--checkpoint-every", "1000")
    with monkeypatch.context() as m:
        def killed(*a, **k):
            raise KeyboardInterrupt
        m.setattr(train, "_write_outputs", killed)
        assert run(train.main, args) == 130
    state = workdir / "data/resume/softmax/shapes/state.pt"
    saved = torch.load(state, weights_only=True)["trainer"]
    trained = saved["model"]
    assert saved["seconds"] > 0  # the killed process's training time, carried into the retry's summary
    capsys.readouterr()
    assert run(train.main, args) == 0
    steps = tiny_params_dict()["train"]["common"]["steps"]
    assert f"resume: continuing from step {steps}" in capsys.readouterr().out
    summary = read_metrics(workdir / "data/train/softmax/shapes/summary.json")
    assert summary["resumed_from_step"] == steps and summary["train_seconds"] >= round(saved["seconds"], 2)
    written = torch.load(workdir / "data/train/softmax/shapes/model.pt", weights_only=True)["model"]
    assert written.keys() == trained.keys() and all(torch.equal(written[k], trained[k]) for k in trained)
    assert not state.exists()


# 16 --------------------------------------------------------------------------------------------------

def _scratch(tmp_path: Path, *files: str) -> Path:
    """A copy of the pipeline in a scratch git repository, on tiny params, with the environment at .venv."""
    import shutil
    for f in files:
        src = REPO / f
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / f, **(
            {"ignore": shutil.ignore_patterns("__pycache__", "tmp", "cache")} if src.is_dir() else {}))
    p = tiny_params_dict()
    p["objectives"], p["datasets"] = ["softmax"], ["shapes"]
    write_params(tmp_path / "params.yaml", p)
    (tmp_path / ".venv").symlink_to(Path(sys.executable).parent.parent)
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    return tmp_path


BARE = {"PATH": "/usr/local/bin:/usr/bin:/bin", "EBM_NO_PROGRESS": "1", "EBM_OFFLINE": "1"}


def test_the_readme_way_to_run_outside_an_activated_environment_works(tmp_path):
    """The README's one-command form, run from a shell whose PATH has no environment on it."""
    import re
    readme = (REPO / "README.md").read_text()
    form = re.search(r'`(PATH="\$PWD/\.venv/bin:\$PATH" dvc repro)`', readme)
    assert form, "README must show how to run the tools without activating the environment"
    work = _scratch(tmp_path, "dvc.yaml", ".dvcignore", "pipeline", "ebm", ".dvc")
    r = subprocess.run(["bash", "-c", form.group(1) + " params"], cwd=work, env={**BARE, "HOME": str(work)},
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (work / "data/params/validated.txt").is_file()


# 5 ---------------------------------------------------------------------------------------------------

def test_dvc_stages_refuse_while_snakemake_runs(tmp_path):
    from pipeline import runlock
    work = _scratch(tmp_path, "dvc.yaml", ".dvcignore", "pipeline", "ebm", ".dvc")
    runlock.take_for_snakemake(work)  # as Snakemake's onstart does; held until the file is closed
    try:
        r = subprocess.run([str(Path(sys.executable).parent / "dvc"), "repro"], cwd=work,
                           env={**BARE, "HOME": str(work), "PATH": f"{Path(sys.executable).parent}:{BARE['PATH']}"},
                           capture_output=True, text=True)
    finally:
        runlock._held.pop().close()
    assert r.returncode != 0
    assert f"snakemake (pid {__import__('os').getpid()}) is running in this workspace" in r.stdout + r.stderr
    assert not (work / "data/params/validated.txt").exists()


def test_snakemake_refuses_while_dvc_runs(tmp_path):
    import zc.lockfile
    work = _scratch(tmp_path, "Snakefile", "pipeline", "ebm", "envs", "data/raw/shapes")
    (work / ".dvc/tmp").mkdir(parents=True)
    lock = zc.lockfile.LockFile(str(work / ".dvc/tmp/lock"))  # what `dvc repro` holds between stages
    try:
        r = subprocess.run([str(Path(sys.executable).parent / "snakemake"), "--cores", "1", "all"], cwd=work,
                           env={**BARE, "HOME": str(work)}, capture_output=True, text=True)
    finally:
        lock.close()
    assert r.returncode == 2, r.stdout + r.stderr
    assert "error: dvc is running in this workspace" in r.stderr
    made = {p.relative_to(work).as_posix() for p in (work / "data").rglob("*") if p.is_file()} - {
        "data/raw/shapes/README.md"}  # copied in: a clone's
    assert all(p.startswith("data/params/hash/") for p in made), made  # no job ran (only the Snakefile's hashes)


def test_dvc_activity_sees_a_running_stage(tmp_path):
    import os

    from pipeline import runlock
    (tmp_path / ".dvc/tmp").mkdir(parents=True)
    assert runlock.dvc_activity(tmp_path) is None
    entry = {"pid": os.getpid(), "cmd": "dvc repro"}
    (tmp_path / ".dvc/tmp/rwlock").write_text(json.dumps({"read": {}, "write": {"/x/data/train": entry}}))
    assert runlock.dvc_activity(tmp_path) == f"pid {os.getpid()}: dvc repro"
    dead = {"pid": 2 ** 22 + 12345, "cmd": "dvc repro"}  # above the usual pid_max: not a live process
    (tmp_path / ".dvc/tmp/rwlock").write_text(json.dumps({"read": {}, "write": {"/x/data/train": dead}}))
    assert runlock.dvc_activity(tmp_path) is None


# 6, 7, 8 ---------------------------------------------------------------------------------------------

def _check(tmp_path: Path, text: str, capsys) -> str:
    from pipeline import check_params
    (tmp_path / "params.yaml").write_text(text)
    code = run(check_params.main, ["--params", str(tmp_path / "params.yaml"), "--out", str(tmp_path / "ok.txt")])
    assert not (tmp_path / "ok.txt").exists()
    return _one_line_error(capsys, code)


def test_duplicate_key_in_params_is_refused(tmp_path, capsys):
    import yaml
    text = yaml.safe_dump(tiny_params_dict(), sort_keys=False).replace("train:\n", "train:\n  foo: 1\n  foo: 2\n", 1)
    err = _check(tmp_path, text, capsys)
    assert "duplicate key 'foo' at line" in err


def test_duplicate_nested_key_in_params_is_refused(tmp_path, capsys):
    import yaml
    text = yaml.safe_dump(tiny_params_dict(), sort_keys=False)
    text = text.replace("    lr: ", "    lr: 0.5\n    lr: ", 1)
    err = _check(tmp_path, text, capsys)
    assert "duplicate key 'lr' at line" in err


@pytest.mark.parametrize("section,key,value", [("common", "lr", ".inf"), ("jem", "sgld_lr", ".nan"),
                                               ("jem", "sgld_std", "-.inf")])
def test_non_finite_floats_are_refused(tmp_path, capsys, section, key, value):
    import yaml
    p = tiny_params_dict()
    p["train"][section][key] = "PLACEHOLDER"
    text = yaml.safe_dump(p, sort_keys=False).replace("PLACEHOLDER", value)
    err = _check(tmp_path, text, capsys)
    assert f"train.{section}.{key}: expected a finite number" in err


@pytest.mark.parametrize("key", ["objectives", "datasets"])
def test_empty_fan_out_lists_are_refused(tmp_path, capsys, key):
    import yaml
    p = tiny_params_dict()
    p[key] = []
    err = _check(tmp_path, yaml.safe_dump(p, sort_keys=False), capsys)
    assert f"{key}: needs at least one" in err


# 11 --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("drop", ["classes", "model_cfg", "meta"])
def test_checkpoint_of_the_wrong_structure_names_file_and_key(tmp_path, drop):
    import torch

    from ebm.checkpoint import CheckpointError, load_checkpoint
    ckpt = {"format": 1, "model": {}, "model_cfg": {}, "classes": ["a"], "objective_state": {}, "meta": {}}
    del ckpt[drop]
    torch.save(ckpt, tmp_path / "model.pt")
    with pytest.raises(CheckpointError, match=rf"model.pt: checkpoint lacks key '{drop}'"):
        load_checkpoint(tmp_path / "model.pt")


def test_checkpoint_whose_weights_do_not_fit_is_a_checkpoint_error(tmp_path):
    import torch

    from ebm.checkpoint import CheckpointError, load_checkpoint
    from ebm.config import parse_params, to_dict
    cfg = to_dict(parse_params(tiny_params_dict()).model)
    torch.save({"format": 1, "model": {"nonsense": torch.zeros(1)}, "model_cfg": cfg, "classes": ["a", "b"],
                "objective_state": {}, "meta": {}}, tmp_path / "model.pt")
    with pytest.raises(CheckpointError, match="model.pt: model config or weights do not fit"):
        load_checkpoint(tmp_path / "model.pt")


@pytest.mark.parametrize("state", [{"params_hash": "h", "trainer": 5}, {"params_hash": "h", "trainer": {"step": 2}},
                                   ["not", "a", "dict"]])
def test_resume_state_of_the_wrong_structure_starts_fresh_said_once(tmp_path, state):
    import torch

    from ebm.config import parse_params
    from ebm.data.store import build_dataset
    from ebm.train import ResumeStore
    from ebm.train import train as train_loop
    p = parse_params(tiny_params_dict())
    arrays, _ = build_dataset("shapes", p.data["shapes"], tmp_path / "raw")
    (tmp_path / "res").mkdir()
    torch.save(state, tmp_path / "res/state.pt")
    said: list[str] = []
    result = train_loop(p, "softmax", arrays, torch.device("cpu"), progress=False,
                        resume=ResumeStore(tmp_path / "res", "h", log=said.append))
    assert result.resumed_from is None and len(result.history) > 0
    assert len(said) == 1 and "unusable" in said[0] and "starting fresh" in said[0], said



def test_a_fresh_start_after_an_unusable_resume_state_keeps_the_process_world(tmp_path, monkeypatch):
    """The trainer rebuilt after an unusable state is built for the same world (rank, size) as the first."""
    import torch

    import ebm.train
    from ebm.checkpoint import write_resume_state
    from ebm.config import parse_params
    from ebm.data.store import build_dataset
    from ebm.distributed import World
    p = parse_params(tiny_params_dict())
    arrays, _ = build_dataset("shapes", p.data["shapes"], tmp_path / "raw")
    (tmp_path / "res").mkdir()
    write_resume_state(tmp_path / "res/state.pt", "h", {"step": 2})  # reads as a resume state, does not fit
    worlds = []
    real = ebm.train.Trainer

    def recording(*a, **kw):
        worlds.append(kw.get("world"))
        return real(*a, **kw)

    monkeypatch.setattr(ebm.train, "Trainer", recording)
    world = World(rank=0, local_rank=0, size=1)
    ebm.train.train(p, "softmax", arrays, torch.device("cpu"), progress=False, world=world,
                    resume=ebm.train.ResumeStore(tmp_path / "res", "h", log=lambda _: None))
    assert len(worlds) == 2 and all(w is world for w in worlds), worlds

# progress bars ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("progress", [True, False])
def test_fid_feature_extraction_shows_torch_fidelitys_bars_unless_hidden(monkeypatch, tmp_path, progress):
    """IS/FID: torch-fidelity's own feature-extraction bars (its ``verbose``) follow the progress flag."""
    import numpy as np
    import torch_fidelity

    from ebm.eval import fidelity
    seen = {}

    def fake_metrics(**kw):
        seen.update(kw)
        return {"inception_score_mean": 1.0, "inception_score_std": 0.0, "frechet_inception_distance": 0.0}
    monkeypatch.setattr(torch_fidelity, "calculate_metrics", fake_metrics)
    monkeypatch.setattr(fidelity, "resolve_inception_weights", lambda param: (str(tmp_path / "w.pth"), None))
    x = np.zeros((4, 32, 32, 3), np.uint8)
    q = fidelity.sample_quality(x, x, weights="", device="cpu", progress=progress)
    assert q["reason"] is None and seen["verbose"] is progress


@pytest.mark.parametrize("progress", [True, False])
def test_pgd_and_pxgrad_loops_show_progress_unless_hidden(capsys, progress):
    import numpy as np
    import torch

    from ebm.config import parse_params
    from ebm.eval.robustness import robust_accuracy
    from ebm.eval.run import grad_norm_scores
    from ebm.models import build_model
    model = build_model(parse_params(tiny_params_dict()).model, 3)
    x = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    robust_accuracy(model, x, np.zeros(4, dtype=np.int64), norm="linf", eps_list=[0, 8], step=2, steps=1,
                    batch_size=2, progress=progress)
    grad_norm_scores(model, x, batch_size=2, device=torch.device("cpu"), noise=0.0, progress=progress)
    err = capsys.readouterr().err
    assert ("PGD linf" in err and "pxgrad" in err) is progress, err


# 4 ---------------------------------------------------------------------------------------------------

@pytest.mark.slow  # kept out of `make test`'s 10 minutes; `make test-slow` and CI run it
def test_snakemake_after_dvc_sees_a_params_edit_and_dvc_commit_records_the_right_models(tmp_path):
    """DVC run, params edit, `snakemake all`, `dvc commit -f`: the recorded models are the edited params'."""
    import torch
    import yaml
    work = _scratch(tmp_path, "Snakefile", "dvc.yaml", ".dvcignore", "pipeline", "ebm", "envs", ".dvc", "data/raw/shapes")
    bin_ = Path(sys.executable).parent
    env = {**BARE, "HOME": str(work), "PATH": f"{bin_}:{BARE['PATH']}"}

    def sh(*cmd: str) -> subprocess.CompletedProcess:
        r = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True)
        assert r.returncode == 0, f"{cmd}: {r.stdout}\n{r.stderr}"
        return r
    sh("dvc", "repro")
    model = work / "data/train/softmax/shapes/model.pt"
    assert torch.load(model, weights_only=True)["meta"]["seed"] == 0
    p = yaml.safe_load((work / "params.yaml").read_text())
    p["train"]["common"]["seed"] = 1
    write_params(work / "params.yaml", p)
    sh("snakemake", "--cores", "1", "all")
    assert torch.load(model, weights_only=True)["meta"]["seed"] == 1, "Snakemake did not rerun train"
    sh("dvc", "commit", "-f")
    status = sh("dvc", "status").stdout
    assert "changed" not in status and "modified" not in status, status
    lock = yaml.safe_load((work / "dvc.lock").read_text())
    train_lock = lock["stages"]["train@softmax-shapes"]
    assert train_lock["params"]["params.yaml"]["train.common"]["seed"] == 1


@pytest.mark.slow  # kept out of `make test`'s 10 minutes; `make test-slow` and CI run it
def test_make_repro_runs_the_dag_one_thread_per_job_and_records_it_for_dvc(tmp_path):
    """`make repro` from nothing, from a shell without the environment on PATH: Snakemake runs the whole
    DAG at one thread per job, long jobs first, training in channels-last, then `dvc commit -f` records
    it, so `dvc status` finds nothing to rerun."""
    import yaml
    import re
    work = _scratch(tmp_path, "Makefile", "pyproject.toml", "Snakefile", "dvc.yaml", ".dvcignore", "pipeline",
                    "ebm", "envs", "profiles", ".dvc", "data/raw/shapes")
    p = yaml.safe_load((work / "params.yaml").read_text())
    p["objectives"] = ["softmax", "jem", "hdge"]  # more trainings than cores: the order of jobs matters
    write_params(work / "params.yaml", p)
    env = {**BARE, "HOME": str(work)}
    # -o: the environment (a link to the tests' own) counts as installed; `make repro` would reinstall it
    r = subprocess.run(["make", "-o", ".venv/.installed", "repro"], cwd=work, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert (work / "data/report/index.html").is_file()
    for summary in ("data/train/softmax/shapes/summary.json", "data/pretrain/shapes/metrics.json"):
        device = read_metrics(work / summary)["provenance"]["device"]
        assert device.endswith(" x1 threads"), (summary, device)
    # the Makefile trains in channels-last for this target (an execution flag, kept in the provenance)
    assert read_metrics(work / "data/train/jem/shapes/summary.json")["provenance"]["channels_last"] is True
    status = subprocess.run([str(Path(sys.executable).parent / "dvc"), "status"], cwd=work, env=env,
                            capture_output=True, text=True)
    assert status.returncode == 0 and "up to date" in status.stdout, status.stdout + status.stderr
    lock = yaml.safe_load((work / "dvc.lock").read_text())["stages"]
    assert {"params", "data@shapes", "pretrain@shapes", "train@softmax-shapes", "report"} <= set(lock)
    model = next(o for o in lock["train@softmax-shapes"]["outs"] if o["path"].endswith("model.pt"))
    assert len(model["md5"]) == 32
    # the long jobs first (pipeline/resources.py priority): no generate or evaluate job started before the
    # last train or pretrain job did
    started = re.findall(r"^(?:local)?rule (\w+):$", next((work / ".snakemake/log").glob("*.log")).read_text(), re.M)
    long_ = [i for i, rule in enumerate(started) if rule in ("train", "pretrain")]
    short = [i for i, rule in enumerate(started) if rule in ("generate", "evaluate")]
    assert len(long_) == 4 and len(short) == 6 and max(long_) < min(short), started


@pytest.mark.parametrize("progress", [True, False])
def test_pretraining_decoding_shows_progress_unless_hidden(capsys, progress):
    import numpy as np
    import torch

    from ebm.config import parse_params
    from ebm.pretrain.evaluate import embed
    from ebm.pretrain.train import build_model
    model = build_model(parse_params(tiny_params_dict()).pretrain).eval()
    x = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    embed(model, x, torch.device("cpu"), 2, progress=progress, desc="decode test")
    assert ("decode test" in capsys.readouterr().err) is progress
