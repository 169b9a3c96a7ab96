# The same DAG as dvc.yaml, for parallel and cluster runs. Commands, outputs and params sections
# all come from pipeline/stages.py (a test checks that both tools agree).
#
#   snakemake --cores 2 all          # everything, as `dvc repro`
#   snakemake --cores 2 train_all    # every training run
#   snakemake --profile profiles/slurm all      # on a SLURM cluster (pip install -e '.[cluster]')
#
# Threads, memory, wall time and GPUs per job come from pipeline/resources.py; every job's output goes
# to its log (logs/jobs/<stage>/...). Locally, `gpu` is bounded by the GPUs present.
#
# After a Snakemake run, record it for DVC with `dvc commit -f` (or `dvc exp save`).
# Never run both tools at once in one workspace: each refuses while the other runs (pipeline/runlock.py).
import sys
from pathlib import Path

sys.path.insert(0, workflow.basedir)

from ebm.config import ParamsError, load_params, load_raw, section
from pipeline.resources import JOBS, TRAIN_RETRIES, gpus_present, log_path
from pipeline.stages import ALL_PARAMS, STAGES, fill, input_files, write_params_files

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
write_params_files(load_raw("params.yaml"))

OBJECTIVES = PARAMS.objectives
DATASETS = PARAMS.datasets


# seconds of work: run inside the Snakemake process, never submitted to a cluster
localrules:
    all,
    train_all,
    params,
    report,


wildcard_constraints:
    objective="|".join(OBJECTIVES),
    dataset="|".join(DATASETS),


def stage_sections(stage):
    """The params sections a stage reads, as values: a change to them reruns the job (params trigger)."""
    def get(wildcards):
        names = [fill(s, **dict(wildcards.items())) for s in STAGES[stage].params]
        if names == [ALL_PARAMS]:
            return config
        return {n: section(config, n) for n in names}
    return get


def shell_cmd(stage):
    """The stage's command (as in dvc.yaml), its stdout and stderr going to the job's log."""
    cmd = STAGES[stage].cmd
    for w in ("objective", "dataset"):
        cmd = cmd.replace(f"{{{w}}}", f"{{wildcards.{w}}}")
    return f"{cmd} > {{log}} 2>&1"


def log(stage):
    return log_path(stage, STAGES[stage].matrix)


def resources(stage):
    job = JOBS[stage]
    return {"mem_mb": job.mem_mb, "runtime": job.runtime, "gpu": job.gpu}


def launch(wildcards, resources):
    """gpu=N > 1 (e.g. --set-resources train:gpu=4) runs the job under torchrun, one DDP process per GPU;
    one GPU, or the CPU, runs the command of dvc.yaml as it is."""
    n = int(getattr(resources, "gpu", 1) or 1)
    return f"torchrun --standalone --nproc-per-node {n} -m" if n > 1 else "python -m"


def code(stage):
    """The files the stage's script imports, derived as for dvc.yaml (pipeline/codedeps.py)."""
    return STAGES[stage].code()


def data_inputs(stage):
    """Upstream outputs and the params-hash file a per-item stage reads, as templates ({objective},
    {dataset} are wildcards here)."""
    return [d for d in input_files(STAGES[stage]) if d.startswith("data/")]


def outputs(stage):
    s = STAGES[stage]
    return [o if Path(o).suffix else directory(o) for o in s.declared_outputs()]


rule all:
    input:
        "data/report",


rule train_all:
    input:
        expand("data/train/{objective}/{dataset}/model.pt", objective=OBJECTIVES, dataset=DATASETS),


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
    threads: JOBS["params"].threads
    resources:
        **resources("params"),
    conda:
        "envs/pipeline.yaml"
    shell:
        shell_cmd("params")


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
    threads: JOBS["data"].threads
    resources:
        **resources("data"),
    conda:
        "envs/pipeline.yaml"
    shell:
        shell_cmd("data")


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
        launch=launch,
    threads: JOBS["train"].threads
    resources:
        **resources("train"),
    retries: TRAIN_RETRIES
    conda:
        "envs/pipeline.yaml"
    shell:
        shell_cmd("train").replace("python -m", "{params.launch}", 1)


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
    threads: JOBS["pretrain"].threads
    resources:
        **resources("pretrain"),
    conda:
        "envs/pipeline.yaml"
    shell:
        shell_cmd("pretrain")


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
    threads: JOBS["generate"].threads
    resources:
        **resources("generate"),
    conda:
        "envs/pipeline.yaml"
    shell:
        shell_cmd("generate")


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
    threads: JOBS["evaluate"].threads
    resources:
        **resources("evaluate"),
    conda:
        "envs/pipeline.yaml"
    shell:
        shell_cmd("evaluate")


rule report:
    input:
        code("report"),
        "data/params/validated.txt",
        "data/params/hash/report.sha256",
        expand("data/evaluate/{objective}/{dataset}/metrics.json", objective=OBJECTIVES, dataset=DATASETS),
        expand("data/generate/{objective}/{dataset}/grids", objective=OBJECTIVES, dataset=DATASETS),
        expand("data/pretrain/{dataset}/metrics.json", dataset=DATASETS),
        expand("data/train/{objective}/{dataset}/history.csv", objective=OBJECTIVES, dataset=DATASETS),
    output:
        outputs("report"),
    log:
        log("report"),
    params:
        sections=stage_sections("report"),
    threads: JOBS["report"].threads
    resources:
        **resources("report"),
    conda:
        "envs/pipeline.yaml"
    shell:
        shell_cmd("report")
