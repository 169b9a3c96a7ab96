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
