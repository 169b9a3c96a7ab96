# The same DAG as dvc.yaml, for parallel and cluster runs. Commands, outputs and params sections
# all come from pipeline/stages.py (a test checks that both tools agree).
#
#   snakemake --cores 2 all          # everything, as `dvc repro`
#   snakemake --cores 2 train_all    # every training run (the grid's and the named runs of params.yaml)
#   snakemake --profile profiles/slurm all      # on a SLURM cluster (pip install -e '.[cluster]')
#
# Threads, memory, wall time and GPUs per job come from pipeline/resources.py; every job's output goes
# to its log (logs/jobs/<stage>/...). Locally, `gpu` is bounded by the GPUs present.
#
# After a Snakemake run, record it for DVC with `dvc commit -f` (or `dvc exp save`).
# Never run both tools at once in one workspace: each refuses while the other runs (pipeline/runlock.py).
import re
import sys
from pathlib import Path

sys.path.insert(0, workflow.basedir)

from ebm.config import ParamsError, load_params, load_raw, run_items, section
from pipeline.resources import JOBS, TRAIN_RETRIES, gpus_present, log_path
from pipeline.stages import ALL_PARAMS, STAGES, fill, input_files, item_cmd, sections_of, write_params_files

configfile: "params.yaml"

# Strict params, before any rule runs: a typo or wrong type stops here with the key named.
PARAMS = load_params("params.yaml")
if config != load_raw("params.yaml"):
    raise ParamsError(
        "snakemake --config/--configfile overrides are refused: they would never reach dvc.lock. "
        "Edit params.yaml, or use `dvc exp run -S key=value`."
    )

GPUS = gpus_present()


# Snakemake keeps ONE onstart handler (a second replaces the first): add to this one.
# 1. One runner at a time: stop at once, naming it, while `dvc repro` works here; hold the lock until
#    exit so that DVC's stages refuse to start meanwhile (pipeline/runlock.py).
# 2. Run here: at most as many concurrent GPU jobs as GPUs (each picks a free one, ebm/provenance.py).
#    Without GPUs, or on a cluster, gpu requests stay unbounded (without GPUs jobs use the CPU). Only
#    from here on does Snakemake know the executor: while parsing, local_exec is True even for SLURM.
onstart:
    from pipeline.runlock import RunnerBusy, take_for_snakemake
    try:
        take_for_snakemake()
    except RunnerBusy as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)  # Snakemake then exits 2 and releases its own .snakemake/locks
    if workflow.local_exec and GPUS and "gpu" not in workflow.global_resources:
        workflow.register_resource("gpu", GPUS)
        print(f"gpu: at most {GPUS} GPU jobs at once (the GPUs present)")

# Each stage item's params-hash file, rewritten only when its sections change: a real input, so that a
# params edit reruns the right jobs even for outputs that DVC made (they carry no Snakemake metadata).
# Those of items the params no longer have (a removed named run) are deleted. Each job parses this too.
write_params_files(load_raw("params.yaml"))

DATASETS = PARAMS.datasets
# every run: the grid's (objective × dataset; run = objective) and the named ones (runs.<name>)
RUNS = run_items(config)
OBJECTIVE = {r["run"]: r["objective"] for r in RUNS}


def each_run(template):
    """``template`` (over {run}, {dataset}) filled for every run."""
    return [fill(template, **r) for r in RUNS]


# seconds of work: run inside the Snakemake process, never submitted to a cluster
localrules:
    all,
    train_all,
    params,
    report,


wildcard_constraints:
    run="|".join(map(re.escape, OBJECTIVE)),
    dataset="|".join(DATASETS),


def item(wildcards):
    """A job's wildcards, with its run's objective (a per-run stage's command and params use it)."""
    w = dict(wildcards.items())
    return {**w, "objective": OBJECTIVE[w["run"]]} if "run" in w else w


def stage_sections(stage):
    """The params sections a stage reads, as values: a change to them reruns the job (params trigger)."""
    def get(wildcards):
        if STAGES[stage].params == [ALL_PARAMS]:
            return config
        return {n: section(config, n) for n in sections_of(STAGES[stage], config, **item(wildcards))}
    return get


# each job runs its stage's command (params.cmd: as in dvc.yaml, a named run's with `--run <name>`), its
# stdout and stderr going to the job's log
SHELL = "{params.cmd} > {log} 2>&1"


def command(stage):
    return lambda wildcards: item_cmd(STAGES[stage], **item(wildcards))


def log(stage):
    return log_path(stage, STAGES[stage].matrix)


def resources(stage):
    job = JOBS[stage]
    return {"mem_mb": job.mem_mb, "runtime": job.runtime, "gpu": job.gpu}


def train_command(wildcards, resources):
    """gpu=N > 1 (e.g. --set-resources train:gpu=4) runs the job under torchrun, one DDP process per GPU;
    one GPU, or the CPU, runs the command of dvc.yaml as it is."""
    cmd = command("train")(wildcards)
    n = int(getattr(resources, "gpu", 1) or 1)
    return cmd.replace("python -m", f"torchrun --standalone --nproc-per-node {n} -m", 1) if n > 1 else cmd


def code(stage):
    """The files the stage's script imports, derived as for dvc.yaml (pipeline/codedeps.py)."""
    return STAGES[stage].code()


def data_inputs(stage):
    """Upstream outputs and the params-hash file a per-item stage reads, as templates ({run}, {dataset}
    are wildcards here)."""
    return [d for d in input_files(STAGES[stage]) if d.startswith("data/")]


def outputs(stage):
    s = STAGES[stage]
    return [o if Path(o).suffix else directory(o) for o in s.declared_outputs()]


rule all:
    input:
        "data/report",


rule train_all:
    input:
        each_run("data/train/{run}/{dataset}/model.pt"),


rule params:
    # No file inputs: this Snakefile already validated params.yaml above, before building the DAG, and
    # the marker keeps its mtime while params.yaml stays valid (so DVC and Snakemake runs interleave
    # without spurious reruns downstream). The params trigger reruns it when values change.
    output:
        outputs("params"),
    log:
        log("params"),
    params:
        sections=stage_sections("params"),
        cmd=command("params"),
    threads: JOBS["params"].threads
    priority: JOBS["params"].priority
    resources:
        **resources("params"),
    conda:
        "envs/pipeline.yaml"
    shell:
        SHELL


rule data:
    input:
        code("data"),
        data_inputs("data"),
    output:
        outputs("data"),
    log:
        log("data"),
    params:
        sections=stage_sections("data"),
        cmd=command("data"),
    threads: JOBS["data"].threads
    priority: JOBS["data"].priority
    resources:
        **resources("data"),
    conda:
        "envs/pipeline.yaml"
    shell:
        SHELL


rule train:
    input:
        code("train"),
        data_inputs("train"),
    output:
        outputs("train"),
    log:
        log("train"),
    params:
        sections=stage_sections("train"),
        cmd=train_command,
    threads: JOBS["train"].threads
    priority: JOBS["train"].priority
    resources:
        **resources("train"),
    retries: TRAIN_RETRIES
    conda:
        "envs/pipeline.yaml"
    shell:
        SHELL


rule pretrain:
    input:
        code("pretrain"),
        data_inputs("pretrain"),
    output:
        outputs("pretrain"),
    log:
        log("pretrain"),
    params:
        sections=stage_sections("pretrain"),
        cmd=command("pretrain"),
    threads: JOBS["pretrain"].threads
    priority: JOBS["pretrain"].priority
    resources:
        **resources("pretrain"),
    conda:
        "envs/pipeline.yaml"
    shell:
        SHELL


rule generate:
    input:
        code("generate"),
        data_inputs("generate"),
    output:
        outputs("generate"),
    log:
        log("generate"),
    params:
        sections=stage_sections("generate"),
        cmd=command("generate"),
    threads: JOBS["generate"].threads
    priority: JOBS["generate"].priority
    resources:
        **resources("generate"),
    conda:
        "envs/pipeline.yaml"
    shell:
        SHELL


rule evaluate:
    input:
        code("evaluate"),
        data_inputs("evaluate"),
    output:
        outputs("evaluate"),
    log:
        log("evaluate"),
    params:
        sections=stage_sections("evaluate"),
        cmd=command("evaluate"),
    threads: JOBS["evaluate"].threads
    priority: JOBS["evaluate"].priority
    resources:
        **resources("evaluate"),
    conda:
        "envs/pipeline.yaml"
    shell:
        SHELL


rule report:
    input:
        code("report"),
        "data/params/validated.txt",
        "data/params/hash/report.sha256",
        each_run("data/evaluate/{run}/{dataset}/metrics.json"),
        each_run("data/generate/{run}/{dataset}/grids"),
        expand("data/pretrain/{dataset}/metrics.json", dataset=DATASETS),
        each_run("data/train/{run}/{dataset}/history.csv"),
    output:
        outputs("report"),
    log:
        log("report"),
    params:
        sections=stage_sections("report"),
        cmd=command("report"),
    threads: JOBS["report"].threads
    priority: JOBS["report"].priority
    resources:
        **resources("report"),
    conda:
        "envs/pipeline.yaml"
    shell:
        SHELL
