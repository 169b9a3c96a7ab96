import subprocess
import sys

import pytest

from ebm.config import ParamsError, load_params, load_raw, params_hash, parse_params
from tests.conftest import REPO, tiny_params_dict, write_params


def test_repository_params_are_valid():
    p = load_params(REPO / "params.yaml")
    assert p.objectives and p.datasets
    assert set(p.datasets) <= set(p.data)


def test_unknown_key_is_named():
    p = tiny_params_dict()
    p["train"]["jem"]["sgld_stepz"] = 3
    with pytest.raises(ParamsError, match=r"unknown key train\.jem\.sgld_stepz"):
        parse_params(p)


def test_unknown_top_level_key_is_named():
    p = tiny_params_dict()
    p["evalute"] = {}
    with pytest.raises(ParamsError, match=r"unknown key evalute"):
        parse_params(p)


@pytest.mark.parametrize("key,value,pattern", [
    (("train", "common", "steps"), "100", r"train\.common\.steps: expected an integer"),
    (("train", "common", "steps"), 1.5, r"train\.common\.steps: expected an integer"),
    (("train", "augment", "svhn", "flip"), 1, r"train\.augment\.svhn\.flip: expected true/false"),
    (("train", "jem", "sgld_lr"), True, r"train\.jem\.sgld_lr: expected a number"),
    (("model", "norm"), "batchnorm", r"model\.norm: 'batchnorm' is not one of"),
    (("data", "shapes", "ood"), "textures", r"data\.shapes\.ood: expected a list"),
])
def test_wrong_type_is_named(key, value, pattern):
    p = tiny_params_dict()
    node = p
    for k in key[:-1]:
        node = node[k]
    node[key[-1]] = value
    with pytest.raises(ParamsError, match=pattern):
        parse_params(p)


def test_missing_key_is_named():
    p = tiny_params_dict()
    del p["evaluate"]["ece_bins"]
    with pytest.raises(ParamsError, match=r"missing key evaluate\.ece_bins"):
        parse_params(p)


def test_semantic_checks():
    p = tiny_params_dict()
    p["objectives"] = ["softmax", "jem", "vae"]
    with pytest.raises(ParamsError, match=r"objectives\[2\]: 'vae'"):
        parse_params(p)
    p = tiny_params_dict()
    p["model"]["depth"] = 12
    with pytest.raises(ParamsError, match=r"model\.depth"):
        parse_params(p)
    p = tiny_params_dict()
    p["train"]["hdge_jem"]["px_ramp"] = -1
    with pytest.raises(ParamsError, match=r"train\.hdge_jem\.px_ramp: must be in \[0, 1\)"):
        parse_params(p)
    p = tiny_params_dict()
    p["train"]["jem"]["px_until"] = 0
    with pytest.raises(ParamsError, match=r"train\.jem\.px_until: must be in \(0, 1\]"):
        parse_params(p)
    p = tiny_params_dict()
    p["train"]["common"]["steps"] = 10
    p["train"]["jempp"].update(px_start=0.5, px_until=0.5)
    with pytest.raises(ParamsError, match=r"train\.jempp\.px_until: the p\(x\) term would end \(step 5\) before it "
                                          r"starts \(step 5, px_start 0\.5 of 10 steps\)"):
        parse_params(p)


def test_px_schedule_is_a_fraction_of_the_steps():
    """px_start, px_ramp and px_until are fractions of train.common.steps: params.yaml's schedule validates
    at any budget and starts the term at the same share of it; a step count where a fraction belongs (the
    meaning px_start had before) is named with an example."""
    from ebm.objectives import build_objective

    p = load_raw(REPO / "params.yaml")
    for steps in (1, 2, 10, 90, 300, 1000):
        p["train"]["common"]["steps"] = steps
        params = parse_params(p)
        for name in ("jem", "jempp", "sada_jem", "hdge_jem"):
            cfg = getattr(params.train, name)
            on, ramp, off = cfg.px_steps(steps)
            assert (on, ramp, off) == (round(cfg.px_start * steps), round(cfg.px_ramp * steps),
                                       round(cfg.px_until * steps)) and on < off <= steps
    p["train"]["common"]["steps"] = 300
    jem = build_objective("jem", parse_params(p), n_classes=10)
    scales = []
    for step in range(300):
        jem.set_step(step)
        scales.append(jem.px_scale)
    first = scales.index(1.0)
    assert first == round(p["train"]["jem"]["px_start"] * 300) and set(scales[:first]) == {0.0}
    p["train"]["jem"]["px_start"] = 60
    with pytest.raises(ParamsError, match=r"train\.jem\.px_start: must be in \[0, 1\) \(a fraction of "
                                          r"train\.common\.steps, not a step: e\.g\. 0\.2 = step 60 of 300\)"):
        parse_params(p)


def test_int_is_accepted_for_float():
    p = tiny_params_dict()
    p["train"]["common"]["lr"] = 1
    assert parse_params(p).train.common.lr == 1.0


def test_params_hash_depends_only_on_named_sections():
    a = tiny_params_dict()
    b = tiny_params_dict()
    b["train"]["jem"]["sgld_lr"] = 0.5
    assert params_hash(a, ["train.softmax", "model"]) == params_hash(b, ["train.softmax", "model"])
    assert params_hash(a, ["train.jem"]) != params_hash(b, ["train.jem"])


def test_stage_cli_stops_on_typo_before_any_work(tmp_path):
    p = tiny_params_dict()
    p["generate"]["n_sampels"] = 3
    params = write_params(tmp_path / "params.yaml", p)
    out = tmp_path / "ds"
    r = subprocess.run([sys.executable, "-m", "pipeline.data", "--params", str(params), "--dataset", "shapes",
                        "--out", str(out)], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 2
    assert "unknown key generate.n_sampels" in r.stderr
    assert not out.exists()


def test_every_project_error_is_one_clean_line_with_exit_code_2(capsys):
    """pipeline.common.run maps the whole ebm.errors hierarchy to 'error: …' and 2; a bug keeps 1."""
    from ebm import errors
    from pipeline.common import run

    kinds = [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, errors.EbmError)]
    assert len(kinds) >= 6
    for kind in kinds:
        args = {errors.DivergenceError: (3, {"loss": 1.0}, "why"), errors.WriteError: ("out.json", "disk full")}
        exc = kind(*args.get(kind, ("the problem",)))

        def main(argv, exc=exc):
            raise exc
        assert run(main, []) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err

    def bug(argv):
        raise KeyError("x")
    assert run(bug, []) == 1
    assert "Traceback" in capsys.readouterr().err


def test_names_are_defined_once_and_match_their_implementations():
    """The objectives are train's sub-sections, and the registry builds exactly those; the corruption
    names of the schema are the implemented ones, in the order that seeds them."""
    from ebm.config import CORRUPTIONS, OBJECTIVES
    from ebm.objectives import REGISTRY
    from ebm.pretrain.corruptions import _LEVELS

    assert list(REGISTRY) == list(OBJECTIVES)
    assert all(REGISTRY[name].name == name for name in OBJECTIVES)
    assert tuple(_LEVELS) == CORRUPTIONS


def test_config_modules_stay_small():
    from tests.conftest import REPO
    sizes = {p.name: len(p.read_text().splitlines()) for p in (REPO / "ebm" / "config").glob("*.py")}
    assert set(sizes) >= {"schema.py", "convert.py", "load.py"} and max(sizes.values()) <= 250, sizes


# ----------------------------------------------------------------------------------------------------
# named runs (runs.<name>): the shared sections with the run's overrides, loaded as strictly

def _with_runs(**runs) -> dict:
    p = tiny_params_dict()
    p["runs"] = runs
    return p


WIDE = {"objective": "softmax", "dataset": "shapes", "model": {"width": 2}, "train": {"common": {"optimizer": "sgd"}}}


def test_a_named_run_is_the_shared_sections_with_its_overrides():
    from ebm.config import run_items, run_raw

    raw = _with_runs(wide=WIDE)
    base, wide = parse_params(raw), parse_params(run_raw(raw, "wide"))
    assert (wide.model.width, wide.train.common.optimizer) == (2, "sgd")
    assert (base.model.width, base.train.common.optimizer) == (1, "adam")  # the shared sections are untouched
    assert wide.model.depth == base.model.depth and wide.train.common.lr == base.train.common.lr
    assert wide.objectives == ["softmax"] and wide.datasets == ["shapes"] and wide.runs == {}
    assert run_items(raw) == [{"run": "softmax", "objective": "softmax", "dataset": "shapes"},
                              {"run": "jem", "objective": "jem", "dataset": "shapes"},
                              {"run": "wide", "objective": "softmax", "dataset": "shapes"}]
    raw["objectives"] = []  # the grid off: named runs only
    assert parse_params(raw).objectives == [] and [r["run"] for r in run_items(raw)] == ["wide"]


@pytest.mark.parametrize("run, pattern", [
    ({**WIDE, "model": {"widht": 2}}, r"^unknown key runs\.wide\.model\.widht "),
    ({**WIDE, "train": {"common": {"optimiser": "sgd"}}}, r"^unknown key runs\.wide\.train\.common\.optimiser "),
    ({**WIDE, "pretrain": {"steps": 3}}, r"^unknown key runs\.wide\.pretrain "),
    ({**WIDE, "model": {"width": "2"}}, r"^runs\.wide: model\.width: expected an integer"),
    ({**WIDE, "model": {"depth": 11}}, r"^runs\.wide: model\.depth: must be 6n\+4"),
    ({**WIDE, "model": 2}, r"^runs\.wide\.model: expected a mapping"),
    ({**WIDE, "train": {"jem": {"sgld_steps": 3}}}, r"^runs\.wide\.train\.jem: a softmax run reads train\.common"),
    ({**WIDE, "objective": "jemm"}, r"^runs\.wide\.objective: 'jemm' is not one of"),
    ({**WIDE, "dataset": "cifar10"}, r"^runs\.wide\.dataset: 'cifar10' is not listed in `datasets`"),
    ({"dataset": "shapes"}, r"^missing key runs\.wide\.objective"),
])
def test_a_bad_named_run_is_named(run, pattern):
    with pytest.raises(ParamsError, match=pattern):
        parse_params(_with_runs(wide=run))


def test_run_names_are_folder_names_and_never_an_objectives():
    with pytest.raises(ParamsError, match=r"runs\.jem: 'jem' is an objective's name"):
        parse_params(_with_runs(jem=WIDE))
    with pytest.raises(ParamsError, match=r"runs\.a/b: a run's name is a folder name"):
        parse_params(_with_runs(**{"a/b": WIDE}))
    p = _with_runs()
    p["objectives"] = []
    with pytest.raises(ParamsError, match="objectives: needs at least one objective, or a named run"):
        parse_params(p)


def test_a_bad_override_stops_the_params_stage_with_one_line(tmp_path):
    params = write_params(tmp_path / "params.yaml", _with_runs(wide={**WIDE, "model": {"widht": 2}}))
    out = tmp_path / "validated.txt"
    r = subprocess.run([sys.executable, "-m", "pipeline.check_params", "--params", str(params), "--out", str(out)],
                       cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert "unknown key runs.wide.model.widht" in r.stderr and not out.exists()


def test_a_stage_reads_its_named_run_and_hashes_its_entry(tmp_path):
    from pipeline.common import stage_params

    params = write_params(tmp_path / "params.yaml", _with_runs(wide=WIDE))
    grid = stage_params(str(params), "train", objective="softmax", dataset="shapes")
    wide = stage_params(str(params), "train", run="wide", objective="softmax", dataset="shapes")
    assert grid.params.model.width == 1 and wide.params.model.width == 2
    assert grid.sections == ["model", "train.common", "train.augment.shapes", "train.softmax"]
    assert wide.sections == [*grid.sections, "runs.wide"] and wide.hash != grid.hash
    assert stage_params(str(params), "evaluate", run="wide").sections == ["evaluate", "runs.wide"]
    with pytest.raises(ParamsError, match="runs.wide.objective is 'softmax', not 'jem'"):
        stage_params(str(params), "train", run="wide", objective="jem", dataset="shapes")
    with pytest.raises(ParamsError, match="no named run 'narrow'"):
        stage_params(str(params), "evaluate", run="narrow")


@pytest.mark.parametrize("name,key,value,message", [
    *((o, "sgld_steps", 0, "must be > 0") for o in ("jem", "jempp", "sada_jem", "hdge_jem")),
    *((o, "temperature", 0, "must be > 0") for o in ("hdge", "hdge_jem")),
    *((o, "split_optimizer", -0.1, "must be >= 0") for o in ("jem", "jempp", "sada_jem", "hdge", "hdge_jem"))])
def test_each_sampler_contrastive_and_split_section_is_checked(name, key, value, message):
    """The cross-field checks find the sampling sections (those with a p(x) schedule), the contrastive ones
    (those with a queue) and those with a term besides the cross-entropy (``split_optimizer``) by their
    fields, not by a list of names: each of them is checked."""
    p = tiny_params_dict()
    p["train"][name][key] = value
    with pytest.raises(ParamsError, match=rf"train\.{name}\.{key}: {message}"):
        parse_params(p)
