"""Shared fixtures: a tiny params file derived from the repository's own params.yaml."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from ebm.objectives import REGISTRY

REPO = Path(__file__).resolve().parents[1]


def tiny_params_dict() -> dict:
    """The real params.yaml with sizes cut down so the whole DAG runs in seconds on a CPU."""
    p = yaml.safe_load((REPO / "params.yaml").read_text())
    p = copy.deepcopy(p)
    p["objectives"] = ["softmax", "jem"]  # the default runs all six; two keep the DAG tests within budget
    p["data"]["shapes"].update(n_train=200, n_test=100, n_ood=50)
    p["model"].update(depth=10, width=1)
    p["train"]["common"].update(steps=6, batch_size=16, warmup_steps=2)
    for o in (o for o, cls in REGISTRY.items() if cls.trains_sampler):  # p(x) from step 0 of 6
        p["train"][o].update(sgld_steps=2, buffer_size=64, sample_batch_size=8, px_start=0)
    p["train"]["hdge"].update(queue_size=32)
    p["train"]["hdge_jem"].update(queue_size=32)
    p["pretrain"].update(steps=3, batch_size=16, warmup_steps=1, dim=16, heads=2, probe_steps=5,
                         eval_batch_size=64, severities=[1])
    p["generate"].update(n_samples=8, n_per_class=1, sgld_steps=2, batch_size=8)
    p["evaluate"].update(batch_size=64, pgd_images=16, pgd_steps=2, pgd_linf_eps=[8], pgd_l2_eps=[100])
    return p


def write_params(path: Path, p: dict) -> Path:
    path.write_text(yaml.safe_dump(p, sort_keys=False))
    return path


@pytest.fixture
def tiny_params(tmp_path: Path) -> Path:
    return write_params(tmp_path / "params.yaml", tiny_params_dict())


def copy_from_repo(dest: Path, paths) -> None:
    """Copy these files and folders of the repository into ``dest`` (no caches)."""
    import shutil

    for f in paths:
        src, dst = REPO / f, dest / f
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "tmp", "cache"))
        else:
            shutil.copy(src, dst)
