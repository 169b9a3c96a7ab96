"""Paper-scale configurations: valid under the strict schema, and one run set of eight named runs that
both runners plan as eight jobs (dry runs only: never trained in CI)."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ebm.config import ParamsError, load_raw, parse_params, run_raw
from ebm.config.runs import merge
from pipeline.runset import main, run_set
from tests.conftest import copy_from_repo, REPO

PRESETS = sorted((REPO / "configs" / "paper").glob("*.yaml"))
BIN = Path(sys.executable).parent


def test_there_is_a_preset_per_objective_and_dataset():
    names = {p.stem for p in PRESETS}
    for obj in ("jem", "jempp", "sada_jem", "hdge"):
        for ds in ("cifar10", "cifar100"):
            assert f"{obj}-{ds}" in names


@pytest.fixture(scope="module")
def paper() -> dict:
    doc = run_set(load_raw(REPO / "params.yaml"), PRESETS)
    parse_params(doc)
    return doc


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.stem)
def test_each_named_run_has_exactly_its_presets_settings(paper, path):
    """The run's own params equal the preset applied to the whole params file (as `dvc exp run -S` did)."""
    preset = yaml.safe_load(path.read_text())
    alone = parse_params(merge(load_raw(REPO / "params.yaml"), preset))
    run = parse_params(run_raw(paper, path.stem))
    obj, ds = path.stem.split("-")
    assert paper["runs"][path.stem]["objective"] == obj and paper["runs"][path.stem]["dataset"] == ds
    assert run.objectives == alone.objectives == [obj] and run.datasets == alone.datasets == [ds]
    for section in ("model", "train", "generate", "evaluate"):
        assert getattr(run, section) == getattr(alone, section), section
    assert run.data[ds] == alone.data[ds] and run.model.depth == 28 and run.model.width == 10


def test_the_run_set_turns_the_grid_off_and_prepares_each_dataset_once(paper):
    assert paper["objectives"] == [] and sorted(paper["datasets"]) == ["cifar10", "cifar100"]
    assert sorted(paper["runs"]) == sorted(p.stem for p in PRESETS)


def test_the_run_set_refuses_what_a_run_cannot_set(tmp_path, capsys):
    base = load_raw(REPO / "params.yaml")
    bad = tmp_path / "bad.yaml"
    for text, pattern in [
        ("objectives: [jem]\ndatasets: [cifar10]\ntrain:\n  jem:\n    sgld_stepz: 3\n", "unknown key runs.bad.train.jem.sgld_stepz"),
        ("objectives: [jem]\ndatasets: [cifar10]\npretrain:\n  steps: 3\n", "pretrain cannot differ between runs"),
        ("objectives: [jem, hdge]\ndatasets: [cifar10]\n", "exactly one objective and one dataset"),
        ("objectives: [jem]\ndatasets: [cifar10]\ndata:\n  cifar10:\n    n_train: 7\n", "sets data.cifar10 differently"),
    ]:
        bad.write_text(text)
        with pytest.raises(ParamsError, match=re.escape(pattern)):
            parse_params(run_set(base, [PRESETS[0], PRESETS[2], bad]))
    out = tmp_path / "params.yaml"
    assert main([*map(str, PRESETS), str(bad), "--params", str(REPO / "params.yaml"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "differently" in err and not out.exists()


# Each paper's evaluation protocol (METHODS.md §1.6, §2.5, §3.5, §4.4, §7): test-time noise, PGD steps and
# restarts, attacked images, IS/FID sample size, the generation recipe.
PAPER_EVAL = {
    "jem": dict(test_noise=0.03, pgd_steps=40, pgd_restarts=20, sgld_steps=40, calls=1000, reinit_freq=0.05),
    "jempp": dict(test_noise=0.03, pgd_steps=50, pgd_restarts=1, sgld_steps=10, calls=1000, reinit_freq=0.0),
    "sada_jem": dict(test_noise=0.0, pgd_steps=50, pgd_restarts=1, pgd_images=1000, sgld_steps=5, calls=1000),
    "hdge": dict(test_noise=0.03, pgd_steps=40, pgd_restarts=20, sgld_steps=40, calls=1000),
}


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.stem)
def test_preset_sets_the_papers_generation_and_evaluation(paper, path):
    """Each named run overrides generate and evaluate with its paper's protocol, and every one of these keys
    differs from the embedded default (so `dvc params diff` shows them)."""
    default = parse_params(load_raw(REPO / "params.yaml"))
    params = parse_params(run_raw(paper, path.stem))
    obj, ds = path.stem.split("-")
    e, g = params.evaluate, params.generate
    for k, v in PAPER_EVAL[obj].items():
        assert getattr(e if hasattr(e, k) else g, k) == v, k
    assert e.ece_bins == 20 and e.pgd_linf_eps == [1, 2, 4, 8, 12, 16, 22, 30] and e.pgd_linf_step == 2
    assert g.mode == "persistent" and g.n_samples == 10_000  # IS/FID on 10k images
    assert {"svhn", "interp"} <= set(params.data[ds].ood)
    if ds == "cifar10":
        assert set(params.data[ds].ood) == {"svhn", "interp", "cifar100", "celeba"}  # JEM Tables 2-3
    run = paper["runs"][path.stem]
    for k in ("evaluate.pgd_steps", "evaluate.pgd_images", "evaluate.pgd_linf_eps", "generate.n_samples",
              "generate.mode", "generate.calls"):
        section, key = k.split(".")
        assert key in run[section], k
        assert getattr(getattr(params, section), key) != getattr(getattr(default, section), key), k


def test_the_paper_run_set_is_eight_jobs_in_both_runners(tmp_path):
    """`python -m pipeline.runset configs/paper/*.yaml --out params.yaml`, then dry runs: Snakemake through
    the SLURM profile plans eight train jobs (each with its GPU, memory and wall time), DVC eight train_run
    stages, each run its own outputs; nothing of the grid."""
    copy_from_repo(tmp_path, ("Snakefile", "dvc.yaml", ".dvcignore", ".gitignore", "pipeline", "ebm", "envs", "profiles", ".dvc"))
    assert main([*map(str, PRESETS), "--params", str(REPO / "params.yaml"), "--out", str(tmp_path / "params.yaml")]) == 0
    for ds in ("cifar10", "cifar100"):  # torchvision downloads into the raw folders, the data stages' inputs
        (tmp_path / "data/raw" / ds).mkdir(parents=True)
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    r = subprocess.run(["snakemake", "-n", "--profile", "profiles/slurm", "all"], cwd=tmp_path, env=env,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    jobs = [j for j in re.split(r"\n(?=\[|rule \w+:)", r.stdout + r.stderr) if j.startswith("rule train:")]
    assert len(jobs) == 8
    planned = {}
    for j in jobs:
        run = re.search(r"wildcards: run=([\w.-]+), dataset=(\w+)", j)
        assert run and f"--run {run.group(1)} > logs/jobs/train/{run.group(1)}/{run.group(2)}.log" in j, j
        assert re.search(r"resources: .*mem_mb=32000.*runtime=1440, gpu=1", j), j
        assert f"output: data/train/{run.group(1)}/{run.group(2)}/model.pt" in j
        planned[run.group(1)] = re.search(r"--objective (\w+) --dataset (\w+)", j).groups()
    assert planned == {p.stem: tuple(p.stem.split("-")) for p in PRESETS}
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    status = subprocess.run([str(BIN / "dvc"), "status", "--json"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert status.returncode == 0, status.stderr
    stages = set(json.loads(status.stdout))
    assert {s for s in stages if s.startswith("train")} == {f"train_run@{p.stem}" for p in PRESETS}
    assert {s for s in stages if s.startswith("evaluate")} == {f"evaluate_run@{p.stem}" for p in PRESETS}


@pytest.mark.parametrize("path", [p for p in PRESETS if not p.stem.startswith("hdge")], ids=lambda p: p.stem)
def test_preset_runs_the_papers_p_x_schedule(paper, path):
    """The JEM-family presets train p(x) from the first step to the last, as the papers do, while the
    embedded default (px_until 0.8 or 2/3) does not: a preset that lost the key would inherit the default."""
    obj = path.stem.split("-")[0]
    cfg = getattr(parse_params(run_raw(paper, path.stem)).train, obj)
    assert (cfg.px_start, cfg.px_ramp, cfg.px_until) == (0, 0, 1.0)
    assert getattr(parse_params(load_raw(REPO / "params.yaml")).train, obj).px_until < 1


def test_seeds_add_each_run_again_with_only_its_training_seed_changed(tmp_path, capsys):
    """`python -m pipeline.runset --seeds 1,2`: the grid and the named runs stay; each run gains
    `<run>-seed<S>` whose effective params differ from its own in `train.common.seed` alone; run again on
    its own output, it replicates each group once; what would train a seed twice is refused."""
    from ebm.report.seeds import seed_variant

    base = load_raw(REPO / "params.yaml")
    base["runs"] = {"wide": {"objective": "jem", "dataset": "shapes", "model": {"width": 2},
                             "train": {"common": {"lr": 0.001}}},
                    "seven": {"objective": "softmax", "dataset": "shapes", "model": {"width": 2},
                              "train": {"common": {"seed": 7}}}}
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))
    assert main(["--seeds", "1,2", "--params", str(tmp_path / "base.yaml"), "--out", str(tmp_path / "p.yaml")]) == 0
    doc = load_raw(tmp_path / "p.yaml")
    parse_params(doc)
    assert doc["objectives"] == base["objectives"] and doc["datasets"] == base["datasets"]
    expected = {"wide", "seven"} | {f"{r}-seed{s}" for r in [*base["objectives"], "wide", "seven"] for s in (1, 2)}
    assert set(doc["runs"]) == expected
    for name in expected - {"wide", "seven"}:
        run, seed = name.rsplit("-seed", 1)
        own = run_raw(doc, run) if run in ("wide", "seven") else {**doc, "objectives": [run], "runs": {}}
        mine = run_raw(doc, name)
        assert mine["train"]["common"]["seed"] == int(seed) != own["train"]["common"]["seed"]
        mine["train"]["common"]["seed"] = own["train"]["common"]["seed"]
        assert {k: mine[k] for k in ("model", "train", "generate", "evaluate")} == \
            {k: own[k] for k in ("model", "train", "generate", "evaluate")}, name
        assert seed_variant(doc, name) == seed_variant(doc, run)  # a grid run (no entry): {}
    assert seed_variant(doc, "wide") == {"model": {"width": 2}, "train": {"common": {"lr": 0.001}}}
    assert seed_variant(doc, "seven") == {"model": {"width": 2}}
    # again, on its own output: each group of seed replicates gains one run per new seed
    assert main(["--seeds", "3", "--params", str(tmp_path / "p.yaml"), "--out", str(tmp_path / "p3.yaml")]) == 0
    added = set(load_raw(tmp_path / "p3.yaml")["runs"]) - expected
    assert added == {f"{r}-seed3" for r in [*base["objectives"], "wide", "seven"]}
    # refused, one line each: a seed a run (or its replicates) already has, a repeated seed; nothing to do
    for seeds, params, err in (("0", "base.yaml", "run 'softmax' (or a replicate of it) already trains with seed 0"),
                               ("7", "base.yaml", "run 'seven' (or a replicate of it) already trains with seed 7"),
                               ("2", "p.yaml", "run 'softmax' (or a replicate of it) already trains with seed 2"),
                               ("3,3", "base.yaml", "3,3 repeats a seed")):
        assert main(["--seeds", seeds, "--params", str(tmp_path / params)]) == 2
        assert err in capsys.readouterr().err

    with pytest.raises(SystemExit):
        main(["--params", str(tmp_path / "base.yaml")])
    assert "give partial params files, --seeds, or both" in capsys.readouterr().err
