"""ebm/checkpoint.py: the one home of weights and run state on disk."""
import re

import pytest
import torch

from ebm.checkpoint import (ResumeStore, load_checkpoint, load_pretrained, read_checkpoint, save_checkpoint,
                            save_pretrained)
from ebm.config import parse_params
from ebm.errors import CheckpointError
from ebm.models import build_model
from ebm.pretrain.train import build_model as build_pretrain
from tests.conftest import REPO, tiny_params_dict


def test_the_project_reads_torch_files_in_one_place():
    calls = [f"{p.relative_to(REPO)}:{i}" for d in ("ebm", "pipeline") for p in sorted((REPO / d).rglob("*.py"))
             for i, line in enumerate(p.read_text().splitlines(), 1) if re.search(r"\btorch\.load\(", line)]
    assert len(calls) == 1 and calls[0].startswith("ebm/checkpoint.py:"), calls


def test_model_checkpoint_round_trip_and_each_kind_refuses_the_others(tmp_path):
    p = parse_params(tiny_params_dict())
    model = build_model(p.model, 4)
    save_checkpoint(tmp_path / "m.pt", model, model_cfg=p.model, classes=list("abcd"), meta={"k": 1},
                    objective_state={"buffer": torch.ones(2)})
    again, ckpt = load_checkpoint(tmp_path / "m.pt")
    for k, v in model.state_dict().items():
        assert torch.equal(v, again.state_dict()[k]), k
    assert ckpt["classes"] == list("abcd") and ckpt["meta"] == {"k": 1}
    save_pretrained(tmp_path / "w.pt", build_pretrain(p.pretrain), p.pretrain, 0.5, {})
    with pytest.raises(CheckpointError, match=r"w\.pt: not a checkpoint of this project"):
        load_checkpoint(tmp_path / "w.pt")
    with pytest.raises(CheckpointError, match=r"m\.pt: not a pretrained model of this project"):
        load_pretrained(tmp_path / "m.pt", build_pretrain)
    with pytest.raises(CheckpointError, match=r"nothing\.pt: resume state not found"):
        read_checkpoint(tmp_path / "nothing.pt", "resume-1", "resume state")


def test_a_foreign_or_corrupt_resume_state_is_named_and_ignored(tmp_path):
    said = []
    store = ResumeStore(tmp_path, "h", log=said.append)
    torch.save({"params_hash": "h", "trainer": {"step": 3}}, store.path)  # no format tag
    assert store.load() is None and "not a resume state" in said[-1] and "starting fresh" in said[-1]
    store.path.write_bytes(b"garbage")
    assert store.load() is None and "cannot be read" in said[-1]
    store.save({"step": 3})
    assert store.load() == {"step": 3}
    store.finish()
    assert not store.path.exists() and (tmp_path / "README.txt").is_file()


def test_per_rank_resume_files_go_through_the_same_format_and_loader(tmp_path):
    from ebm.distributed import World
    from ebm.rank_resume import RankResumeStore
    store = RankResumeStore(tmp_path, "h", World(rank=1, local_rank=1, size=2), log=lambda _: None)
    store.save({"step": 4, "x": torch.ones(2)})
    store.save({"step": 8, "x": torch.zeros(2)})  # the older step goes (no other rank to wait for here)
    assert [p.name for p in tmp_path.glob("state.*")] == ["state.rank1-of2.step8.pt"]
    assert read_checkpoint(tmp_path / "state.rank1-of2.step8.pt", "resume-1", "resume state")["rank"] == 1
    assert store.load()["step"] == 8
    assert RankResumeStore(tmp_path, "other", World(1, 1, 2), log=lambda _: None).load() is None
    torch.save({"params_hash": "h", "trainer": {"step": 9}}, tmp_path / "state.rank1-of2.step9.pt")  # no format
    with pytest.raises(CheckpointError, match=r"state\.rank1-of2\.step9\.pt: not a resume state of this project"):
        store.load()
