"""The one place that names each stage's command, outputs, params sections and data inputs.

``dvc.yaml`` is rendered from this module (``python -m pipeline.stages > dvc.yaml``; a test checks
that the committed file is current) and the ``Snakefile`` builds its rules from it, so the two tools
run the same commands on the same paths. Templates use ``{run}``, ``{objective}`` and ``{dataset}``: a
per-run stage has one item per run (ebm/config/runs.py), a grid run (objective × dataset, whose name is
its objective) or a named run (``runs.<name>``, whose command gains ``--run <name>`` and whose params
gain ``runs.<name>``). DVC renders each per-run stage twice: a ``matrix`` over the grid and a
``foreach`` over ``runs`` (``<stage>_run@<name>``). A stage's
code dependencies are not listed here: :meth:`Stage.code` derives them from what its script imports
(``pipeline/codedeps.py``), for both tools.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field

import yaml

from ebm.config.runs import is_named, run_items
from pipeline.codedeps import code_deps

ALL_PARAMS = "*"  # a stage that tracks the whole params file
# the wildcards of a per-run stage: one item per run of the grid (run = objective) or named run (runs.<name>),
# whose paths use {run}; its command and params sections may use {objective} too
RUN = ("run", "dataset")
RUN_FLAG = " --run {run}"


@dataclass(frozen=True)
class Stage:
    name: str
    cmd: str
    matrix: tuple[str, ...] = ()  # wildcards: () | ("dataset",) | RUN (one item per run)
    deps: list[str] = field(default_factory=list)  # data inputs: upstream outputs (code: see code())
    outs: list[str] = field(default_factory=list)  # cached outputs
    metrics: list[str] = field(default_factory=list)  # cache: false, shown by `dvc metrics`
    plots: dict[str, dict] = field(default_factory=dict)  # cache: false, `dvc plots`; path → x/y fields
    params: list[str] = field(default_factory=list)  # params.yaml sections read (templated)
    persist: list[str] = field(default_factory=list)  # persist: true, cache: false (DVC keeps it across runs)
    # resume state: persist: true, cache: false for DVC, and NOT a Snakemake output, because Snakemake
    # deletes a failed job's outputs and the state must survive a killed or failed run
    state: list[str] = field(default_factory=list)

    def code(self) -> list[str]:
        """The repository files its script imports, transitively (``python -m pipeline.x`` → pipeline/x.py …)."""
        return list(code_deps(self.cmd.split()[2]))

    def declared_outputs(self) -> list[str]:
        return [*self.outs, *self.metrics, *self.plots, *self.persist]


PARAMS_OK = "data/params/validated.txt"
# a dataset's raw files (downloads, local copies; `dvc add` shares them): a data input of its data stage,
# so replacing one reruns that dataset's data stage only. The procedural shapes set reads none: its folder
# holds a README tracked by git, so that the input exists in every clone and experiment workspace.
RAW = "data/raw/{dataset}"
# one file per stage item holding the sha256 of the params sections it reads, rewritten only when that
# changes: a real input for both tools (Snakemake cannot see a params change for outputs DVC made)
PARAMS_HASHES = "data/params/hash"

STAGES: dict[str, Stage] = {s.name: s for s in [
    Stage(
        name="params",
        cmd=f"python -m pipeline.check_params --params params.yaml --out {PARAMS_OK}",
        # persist: DVC must not delete the marker before the run, so that an unchanged marker keeps its
        # mtime and Snakemake does not see a "newer input" after every params edit.
        persist=[PARAMS_OK],
        state=[PARAMS_HASHES],  # not a Snakemake output: the Snakefile writes it too, before any job
        params=[ALL_PARAMS],
    ),
    Stage(
        name="data",
        cmd="python -m pipeline.data --dataset {dataset} --raw-root data/raw --out data/datasets/{dataset}",
        matrix=("dataset",),
        deps=[PARAMS_OK, RAW],
        outs=["data/datasets/{dataset}"],
        params=["data.{dataset}"],
    ),
    Stage(
        name="train",
        cmd=("python -m pipeline.train --objective {objective} --dataset {dataset} "
             "--data data/datasets/{dataset} --out data/train/{run}/{dataset} "
             "--logdir logs/{run}/{dataset} --resume-dir data/resume/{run}/{dataset}"),
        matrix=RUN,
        deps=[PARAMS_OK, "data/datasets/{dataset}"],
        outs=["data/train/{run}/{dataset}/model.pt", "data/train/{run}/{dataset}/info.json"],
        metrics=["data/train/{run}/{dataset}/summary.json"],
        plots={"data/train/{run}/{dataset}/history.csv": {"x": "step", "y": "loss"}},
        params=["model", "train.common", "train.augment.{dataset}", "train.{objective}"],
        state=["data/resume/{run}/{dataset}"],
    ),
    Stage(
        name="pretrain",
        cmd=("python -m pipeline.pretrain --dataset {dataset} --data data/datasets/{dataset} "
             "--out data/pretrain/{dataset} --logdir logs/pretrain/{dataset}"),
        matrix=("dataset",),
        deps=[PARAMS_OK, "data/datasets/{dataset}"],
        outs=["data/pretrain/{dataset}/models", "data/pretrain/{dataset}/info.json"],
        metrics=["data/pretrain/{dataset}/metrics.json"],
        plots={"data/pretrain/{dataset}/history": {"x": "step", "y": "loss"}},  # one CSV per loss weight
        params=["pretrain"],
    ),
    Stage(
        name="generate",
        cmd=("python -m pipeline.generate --checkpoint data/train/{run}/{dataset}/model.pt "
             "--data data/datasets/{dataset} --out data/generate/{run}/{dataset} "
             "--logdir logs/{run}/{dataset}"),
        matrix=RUN,
        deps=[PARAMS_OK, "data/train/{run}/{dataset}/model.pt", "data/datasets/{dataset}"],
        outs=["data/generate/{run}/{dataset}/samples.npz", "data/generate/{run}/{dataset}/grids"],
        params=["generate"],
    ),
    Stage(
        name="evaluate",
        cmd=("python -m pipeline.evaluate --checkpoint data/train/{run}/{dataset}/model.pt "
             "--data data/datasets/{dataset} --samples data/generate/{run}/{dataset}/samples.npz "
             "--out data/evaluate/{run}/{dataset}"),
        matrix=RUN,
        deps=[PARAMS_OK, "data/train/{run}/{dataset}/model.pt", "data/datasets/{dataset}",
              "data/generate/{run}/{dataset}/samples.npz"],
        outs=["data/evaluate/{run}/{dataset}/scores.npz", "data/evaluate/{run}/{dataset}/info.json"],
        metrics=["data/evaluate/{run}/{dataset}/metrics.json"],
        plots={"data/evaluate/{run}/{dataset}/reliability.csv": {"x": "confidence", "y": "accuracy"},
               # folders: one CSV per norm, one per OOD set and score
               "data/evaluate/{run}/{dataset}/robustness": {"x": "eps", "y": "accuracy"},
               "data/evaluate/{run}/{dataset}/roc": {"x": "fpr", "y": "tpr"}},
        params=["evaluate"],
    ),
    Stage(
        name="report",
        cmd="python -m pipeline.report --params params.yaml --out data/report",
        deps=[PARAMS_OK, "data/train", "data/generate", "data/evaluate", "data/pretrain"],
        outs=["data/report"],
        params=["objectives", "datasets", "runs"],
    ),
]}

ORDER = ["params", "data", "pretrain", "train", "generate", "evaluate", "report"]


def report_inputs() -> dict[str, str]:
    """The upstream outputs the report reads (ebm.report.INPUTS → path template), taken from this table."""
    def out(stage: str, name: str) -> str:
        return next(p for p in STAGES[stage].declared_outputs() if p.rsplit("/", 1)[-1] == name)
    return {"metrics": out("evaluate", "metrics.json"), "scores": out("evaluate", "scores.npz"),
            "reliability": out("evaluate", "reliability.csv"), "summary": out("train", "summary.json"),
            "history": out("train", "history.csv"), "grids": out("generate", "grids"),
            "pretrain_metrics": out("pretrain", "metrics.json"), "pretrain_history": out("pretrain", "history")}


def fill(template: str, **wildcards: str) -> str:
    return template.format(**wildcards)


def params_file(stage: Stage) -> str:
    """Template of the file holding the hash of the params sections ``stage`` reads (none for params)."""
    return f"{PARAMS_HASHES}/{stage.name}" + "".join(f"/{{{w}}}" for w in stage.matrix) + ".sha256"


def input_files(stage: Stage) -> list[str]:
    """What a stage reads, for both tools: its data inputs, its params-hash file and its code."""
    return [*stage.deps, *([params_file(stage)] if stage.name != "params" else []), *stage.code()]


def item_params(stage: Stage, **item: str) -> list[str]:
    """The params templates one item reads: a named run's also read its own entry ``runs.<name>``."""
    return [*stage.params, *(["runs.{run}"] if stage.matrix == RUN and is_named(item) else [])]


def item_cmd(stage: Stage, **item: str) -> str:
    """One item's command: a named run's is the grid's command plus ``--run <name>``."""
    return fill(stage.cmd + (RUN_FLAG if stage.matrix == RUN and is_named(item) else ""), **item)


def sections_of(stage: Stage, raw: dict, **item: str) -> list[str]:
    """The params sections one item of ``stage`` reads (``*``: every top-level key of ``raw``)."""
    sections = [fill(s, **item) for s in item_params(stage, **item)]
    return sorted(raw) if sections == [ALL_PARAMS] else sections


def write_params_files(raw: dict, folder: str = PARAMS_HASHES) -> list[str]:
    """Write each stage item's params-hash file whose content changed (an unchanged one keeps its mtime,
    so Snakemake reruns exactly the items whose sections changed), and delete those of items ``raw`` no longer
    has (a removed named run or dataset), so that the folder is what these params alone would write; returns
    the paths written."""
    import os
    from pathlib import Path

    from ebm.config import params_hash
    from ebm.io import atomic_write_text

    written, wanted = [], set()
    for name in ORDER[1:]:
        stage = STAGES[name]
        for item in expand(stage, raw):
            path = Path(folder) / fill(params_file(stage), **item)[len(PARAMS_HASHES) + 1:]
            wanted.add(path)
            text = params_hash(raw, sections_of(stage, raw, **item)) + "\n"
            if not (path.is_file() and path.read_text() == text):
                atomic_write_text(path, text)
                written.append(str(path))
    # Snakemake parses the Snakefile, so runs this, in each job too: another process may have deleted a
    # stale file first, and a folder some wanted file lies under is never removed
    kept = {d for f in wanted for d in f.parents}
    for top, _, files in os.walk(folder, topdown=False):  # os.walk skips a folder that vanishes meanwhile
        for f in (Path(top, name) for name in files if name.endswith(".sha256")):
            if f not in wanted:
                f.unlink(missing_ok=True)
        if Path(top) not in kept:
            try:
                Path(top).rmdir()
            except OSError:  # not empty, or already gone
                pass
    return written


def expand(stage: Stage, raw: dict) -> list[dict[str, str]]:
    """Every item of a stage under the params document ``raw``: [{}], [{'dataset': 'shapes'}, ...] or one
    per run, [{'run': 'jem', 'objective': 'jem', 'dataset': 'shapes'}, ...] (grid first, then named runs)."""
    if stage.matrix == ():
        return [{}]
    if stage.matrix == ("dataset",):
        return [{"dataset": d} for d in raw.get("datasets") or []]
    return run_items(raw)


# ----------------------------------------------------------------------------------------------------
# DVC rendering

# a grid item's {run} is its objective; a named run's is its key in `runs` (DVC's foreach: ${key})
GRID_ITEM = {"run": "${item.objective}", "objective": "${item.objective}", "dataset": "${item.dataset}"}
NAMED_ITEM = {"run": "${key}", "objective": "${item.objective}", "dataset": "${item.dataset}"}


def dvc_stage(stage: Stage, item: dict[str, str] | None = None) -> dict:
    """The stage for DVC; for a per-run stage, ``item`` (GRID_ITEM or NAMED_ITEM) picks which of its two."""
    item = item or GRID_ITEM

    def _dvc(template: str) -> str:
        return fill(template, **item)
    d: dict = {}
    if stage.matrix == ("dataset",):
        d["matrix"] = {"dataset": "${datasets}"}
    elif stage.matrix == RUN:
        d["matrix"] = {"objective": "${objectives}", "dataset": "${datasets}"}
    d["cmd"] = item_cmd(stage, **item)
    d["deps"] = [_dvc(p) for p in input_files(stage)]
    if stage.params == [ALL_PARAMS]:
        d["params"] = [{"params.yaml": None}]
    elif stage.params:
        d["params"] = [_dvc(p) for p in item_params(stage, **item)]
    outs = [_dvc(p) for p in stage.outs]
    outs += [{_dvc(p): {"cache": False, "persist": True}} for p in [*stage.persist, *stage.state]]
    if outs:
        d["outs"] = outs
    if stage.metrics:
        d["metrics"] = [{_dvc(p): {"cache": False}} for p in stage.metrics]
    if stage.plots:
        d["plots"] = [{_dvc(p): {"cache": False, **props}} for p, props in stage.plots.items()]
    return d


def dvc_stages() -> dict[str, dict]:
    """dvc.yaml's stages: each of ORDER; a per-run stage also as ``<name>_run``, a foreach over ``runs``."""
    out: dict[str, dict] = {}
    for name in ORDER:
        out[name] = dvc_stage(STAGES[name])
        if STAGES[name].matrix == RUN:
            named = dvc_stage(STAGES[name], NAMED_ITEM)
            del named["matrix"]
            out[f"{name}_run"] = {"foreach": "${runs}", "do": named}
    return out


def render_dvc_yaml() -> str:
    doc = {"stages": dvc_stages()}
    header = ("# Generated by `python -m pipeline.stages > dvc.yaml` from pipeline/stages.py; do not edit by hand.\n"
              "# tests/test_stages.py checks that this file is current.\n")
    return header + yaml.safe_dump(doc, sort_keys=False, width=10_000, default_flow_style=False)


if __name__ == "__main__":
    sys.stdout.write(render_dvc_yaml())
