"""Paper-scale configurations: valid under the strict schema (not run in CI)."""
from pathlib import Path

import pytest
import yaml

from ebm.config import ParamsError, load_raw, parse_params
from pipeline.overrides import as_cli, leaves, main, merge
from tests.conftest import REPO

PRESETS = sorted((REPO / "configs" / "paper").glob("*.yaml"))


def test_there_is_a_preset_per_objective_and_dataset():
    names = {p.stem for p in PRESETS}
    for obj in ("jem", "jempp", "sada_jem", "hdge"):
        for ds in ("cifar10", "cifar100"):
            assert f"{obj}-{ds}" in names


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.stem)
def test_preset_is_valid_and_changes_only_known_keys(path):
    override = yaml.safe_load(path.read_text())
    params = parse_params(merge(load_raw(REPO / "params.yaml"), override))
    obj, ds = path.stem.split("-")
    assert params.objectives == [obj] and params.datasets == [ds]
    assert params.model.depth == 28 and params.model.width == 10
    assert all(isinstance(k, str) and "=" not in k for k, _ in leaves(override))


def test_overrides_refuse_unknown_keys_and_print_dvc_flags(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  jem:\n    sgld_stepz: 3\n")
    with pytest.raises(ParamsError, match="train.jem.sgld_stepz"):
        merge(load_raw(REPO / "params.yaml"), yaml.safe_load(bad.read_text()))
    assert main([str(bad), "--params", str(REPO / "params.yaml")]) == 2
    assert main([str(PRESETS[0]), "--params", str(REPO / "params.yaml")]) == 0
    out = capsys.readouterr().out.split()
    assert out[0] == "-S" and "=" in out[1]
    assert as_cli("a.b", [0.8, 0.9]) == "a.b=[0.8,0.9]" and as_cli("x", "l2") == "x=l2"


# Each paper's evaluation protocol (METHODS.md §1.6, §2.5, §3.5, §4.4, §7): test-time noise, PGD steps and
# restarts, attacked images, IS/FID sample size, the generation recipe.
PAPER_EVAL = {
    "jem": dict(test_noise=0.03, pgd_steps=40, pgd_restarts=20, sgld_steps=40, calls=1000, reinit_freq=0.05),
    "jempp": dict(test_noise=0.03, pgd_steps=50, pgd_restarts=1, sgld_steps=10, calls=1000, reinit_freq=0.0),
    "sada_jem": dict(test_noise=0.0, pgd_steps=50, pgd_restarts=1, pgd_images=1000, sgld_steps=5, calls=1000),
    "hdge": dict(test_noise=0.03, pgd_steps=40, pgd_restarts=20, sgld_steps=40, calls=1000),
}


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.stem)
def test_preset_sets_the_papers_generation_and_evaluation(path):
    """`dvc exp run` with the preset's -S flags changes these keys, so `dvc params diff` against the default
    shows each paper's evaluation settings; every one of them differs from the embedded default."""
    override = yaml.safe_load(path.read_text())
    default = parse_params(load_raw(REPO / "params.yaml"))
    params = parse_params(merge(load_raw(REPO / "params.yaml"), override))
    obj, ds = path.stem.split("-")
    e, g = params.evaluate, params.generate
    for k, v in PAPER_EVAL[obj].items():
        assert getattr(e if hasattr(e, k) else g, k) == v, k
    assert e.ece_bins == 20 and e.pgd_linf_eps == [1, 2, 4, 8, 12, 16, 22, 30] and e.pgd_linf_step == 2
    assert g.mode == "persistent" and g.n_samples == 10_000  # IS/FID on 10k images
    assert {"svhn", "interp"} <= set(params.data[ds].ood)
    if ds == "cifar10":
        assert set(params.data[ds].ood) == {"svhn", "interp", "cifar100", "celeba"}  # JEM Tables 2-3
    flags = dict(f.split("=", 1) for f in as_cli_flags(override))
    changed = [k for k in flags if k.startswith(("evaluate.", "generate."))]
    for k in ("evaluate.pgd_steps", "evaluate.pgd_images", "evaluate.pgd_linf_eps", "generate.n_samples",
              "generate.mode", "generate.calls"):
        assert k in changed, k
        section, key = k.split(".")
        assert getattr(getattr(params, section), key) != getattr(getattr(default, section), key), k


def as_cli_flags(override: dict) -> list[str]:
    return [as_cli(k, v) for k, v in leaves(override)]
