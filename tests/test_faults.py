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
    summary = json.loads((workdir / "data/train/softmax/shapes/summary.json").read_text())
    assert summary["provenance"]["bf16"] is False and summary["provenance"]["channels_last"] is False
    import torch
    meta = torch.load(workdir / "data/train/softmax/shapes/model.pt", weights_only=True)["meta"]
    assert meta["bf16"] is False and meta["channels_last"] is False
    monkeypatch.setenv("EBM_CHANNELS_LAST", "1")
    assert run(train.main, _train_args()) == 0
    summary = json.loads((workdir / "data/train/softmax/shapes/summary.json").read_text())
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
