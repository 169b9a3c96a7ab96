"""The checks of `make test-cluster` (tests/slurm/run.sh), on a finished SLURM run and a local run of
the same params: every job ran as a SLURM job; a train job killed at its time limit was retried and
resumed; weights and metrics equal the local run's. Prints the evidence; exits 1 naming a failure."""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import torch
import yaml

from pipeline.stages import STAGES, expand
from ebm.artifacts import read_metrics

SUBMITTED = re.compile(r"submitted with SLURM jobid (\d+) \(log: \S*/slurm_logs/rule_(\w+)/(\S*?)/?\d+\.log\)")
REMOTE = ["data", "pretrain", "train", "generate", "evaluate"]  # the rest are localrules
VOLATILE = {"provenance", "train_provenance", "train_seconds", "seconds"}


class CheckFailed(Exception):
    pass


def ensure(ok: bool, msg: str) -> None:
    if not ok:
        raise CheckFailed(msg)


def jobcomp(path: Path) -> dict[str, dict[str, str]]:
    """jobcomp/filetxt: one `Key=Value ...` line per finished job."""
    recs = {}
    for line in path.read_text().splitlines():
        rec = dict(kv.split("=", 1) for kv in line.split() if "=" in kv)
        recs[rec["JobId"]] = rec
    return recs


def finished_before_kill(slurm: Path, rule: str, wild: str, jobid: str) -> bool:
    """Whether SLURM job ``jobid``'s own log says its command had finished. Snakemake prints that line
    inside the job after the command exited 0 and its own checks of the outputs passed, so a kill between
    the command's end and that line is not seen: the check then fails (falsely), never passes falsely."""
    log = slurm / f".snakemake/slurm_logs/rule_{rule}/{wild}/{jobid}.log"
    return log.is_file() and "Finished jobid: 0" in log.read_text()


def strip(d):
    if isinstance(d, dict):
        return {k: strip(v) for k, v in d.items() if k not in VOLATILE}
    return d


def check(slurm: Path, local: Path, comp: Path) -> None:
    p = yaml.safe_load((slurm / "params.yaml").read_text())
    out = (slurm / "snakemake.out").read_text()
    subs = SUBMITTED.findall(out)
    ensure(bool(subs), "no job was submitted to SLURM")
    done = jobcomp(comp)
    expected = {(name, "_".join(w[k] for k in STAGES[name].matrix)): w for name in REMOTE
                for w in expand(STAGES[name], p)}
    attempts: dict[tuple[str, str], list[str]] = {}
    for jobid, rule, wild in subs:
        ensure((rule, wild) in expected, f"unexpected SLURM job {jobid}: rule {rule} {wild}")
        ensure(jobid in done, f"SLURM job {jobid} ({rule} {wild}) has no completion record in {comp}")
        attempts.setdefault((rule, wild), []).append(jobid)
    print(f"{'rule':9} {'wildcards':16} {'SLURM job':>9}  state      ran                limit")
    for key in sorted(attempts):
        for jobid in attempts[key]:
            r = done[jobid]
            start, end = r.get("StartTime", ""), r.get("EndTime", "")
            print(f"{key[0]:9} {key[1]:16} {jobid:>9}  {r['JobState']:10} {start[11:]}-{end[11:]}  "
                  f"{r.get('TimeLimit', '?')} min")
    missing = sorted(set(expected) - set(attempts))
    ensure(not missing, f"jobs that did not run under SLURM: {missing}")
    for key, ids in attempts.items():
        ensure(done[ids[-1]]["JobState"] == "COMPLETED", f"{key}: last SLURM job {ids[-1]} is {done[ids[-1]]['JobState']}")
    for rule in ("params", "report"):
        ensure(f"rule_{rule}/" not in out, f"local rule {rule} was submitted to SLURM")

    # the wall-time kill, the retry and the resume
    killed = [(key, ids) for key, ids in attempts.items() if any(done[i]["JobState"] == "TIMEOUT" for i in ids)]
    ensure(any(key[0] == "train" for key, _ in killed), "no train job was killed at its time limit (TIMEOUT)")
    resumed = 0
    for (rule, wild), ids in killed:
        ensure(rule == "train", f"{rule} {wild} hit its time limit")
        w = expected[(rule, wild)]
        log = (slurm / f"logs/jobs/train/{w['run']}/{w['dataset']}.log").read_text()
        m = re.search(r"resume: continuing from step (\d+)", log)
        timeouts = [i for i in ids if done[i]["JobState"] == "TIMEOUT"]
        if m is None and all(finished_before_kill(slurm, rule, wild, i) for i in timeouts):
            # the kill hit Snakemake's bookkeeping after the command had finished: no state is left to
            # resume from (the stage drops it with its outputs written), and the retry runs it again
            print(f"retried: train {w['run']}/{w['dataset']}: SLURM jobs {' → '.join(ids)}; killed after its "
                  "command had finished, so the retry ran it again")
            continue
        ensure(m is not None and int(m.group(1)) > 0, f"train {wild}: the retry did not resume:\n{log}")
        summary = read_metrics(slurm / f"data/train/{w['run']}/{w['dataset']}/summary.json")
        resumed += int(m.group(1)) < summary["steps"]  # killed during training, not while writing outputs
        ensure(summary["resumed_from_step"] == int(m.group(1)), f"train {wild}: summary disagrees with its log")
        print(f"retried: train {w['run']}/{w['dataset']}: SLURM jobs {' → '.join(ids)} "
              f"({', '.join(done[i]['JobState'] for i in ids)}); the last resumed from step {m.group(1)} "
              f"of {summary['steps']}")

    ensure(resumed > 0, "no train job was killed in the middle of its training and resumed")

    # the same results as a local run with the same params and thread count
    for o in p["objectives"]:
        for d in p["datasets"]:
            a = torch.load(slurm / f"data/train/{o}/{d}/model.pt", weights_only=True)["model"]
            b = torch.load(local / f"data/train/{o}/{d}/model.pt", weights_only=True)["model"]
            ensure(a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a),
                   f"train {o}/{d}: weights differ between the SLURM run and the local run")
            ma, mb = (read_metrics(r / f"data/evaluate/{o}/{d}/metrics.json") for r in (slurm, local))
            ensure(strip(ma) == strip(mb), f"evaluate {o}/{d}: metrics differ between the SLURM and the local run")
            ensure(ma["provenance"]["device"] == mb["provenance"]["device"], f"{o}/{d}: thread counts differ")
            print(f"equal to the local run: {o}/{d} weights, accuracy {ma['accuracy']:.4f}, ECE {ma['ece']:.4f} "
                  f"({ma['provenance']['device']})")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slurm", type=Path, required=True)
    ap.add_argument("--local", type=Path, required=True)
    ap.add_argument("--jobcomp", type=Path, required=True)
    a = ap.parse_args()
    try:
        check(a.slurm, a.local, a.jobcomp)
    except CheckFailed as e:
        print(f"test-cluster: FAILED: {e}", file=sys.stderr)
        return 1
    print("test-cluster: ALL CHECKS PASSED")
    return 0


if __name__ == "__main__":
    sys.exit(main())
