"""The report's table "Seeds": the runs of one objective and dataset that differ in their training seed
alone (``pipeline.runset --seeds``), as one row each: the mean and spread of each metric over the seeds,
and, seed by seed, how the group fares against softmax's group of the same settings (issue 17's bar,
:func:`ebm.report.versus.versus_softmax`)."""
from __future__ import annotations

import copy
import json

import numpy as np

from ebm.config.runs import OVERRIDABLE
from ebm.report.runs import Run
from ebm.report.versus import GENERATIVE, versus_softmax


def seed_variant(raw: dict, run: str) -> dict:
    """Run ``run``'s overrides (``runs.<run>`` of the params document ``raw``) without ``train.common.seed``;
    a grid run's: ``{}``. Runs of one objective and dataset with the same variant differ in their training
    seed alone. (Here, not in ebm.config, so that only the report's code changes with it.)"""
    spec = copy.deepcopy({k: v for k, v in ((raw.get("runs") or {}).get(run) or {}).items() if k in OVERRIDABLE})
    common = (spec.get("train") or {}).get("common")
    if isinstance(common, dict):
        common.pop("seed", None)
        if not common:
            del spec["train"]["common"]
        if not spec["train"]:
            del spec["train"]
    return spec


def _seed(r: Run) -> int | None:
    return (((r.summary or {}).get("params") or {}).get("train.common") or {}).get("seed")


def seed_groups(runs: list[Run]) -> list[dict[int, Run]]:
    """Seed → run, per (dataset, objective, variant) with two or more seeds, in the order of ``runs``. A
    run without a variant, metrics or a recorded seed is in no group; of two runs with one seed, the first."""
    groups: dict[str, dict[int, Run]] = {}
    for r in runs:
        if r.variant is None or r.metrics is None or _seed(r) is None:
            continue
        key = json.dumps([r.dataset, r.objective, r.variant], sort_keys=True)
        groups.setdefault(key, {}).setdefault(_seed(r), r)
    return [dict(sorted(g.items())) for g in groups.values() if len(g) >= 2]


def _pair_key(r: Run) -> str:
    """What a hybrid's group and softmax's must share to be compared: dataset and the variant outside the
    objectives' own sections (model, train.common/augment, generate, evaluate)."""
    v = {k: ({s: x for s, x in val.items() if s in ("common", "augment")} if k == "train" else val)
         for k, val in (r.variant or {}).items()}
    return json.dumps([r.dataset, {k: x for k, x in v.items() if x}], sort_keys=True)


def _point(r: Run) -> dict:
    m = r.metrics or {}
    return {"accuracy": 100 * m["accuracy"], "ece": 100 * m["ece"], "ood": m.get("ood_auroc") or {}}


def _spread(values: list[float], pct: bool) -> str:
    a = np.asarray(values, dtype=float) * (100 if pct else 1)
    digits = 2 if pct else 3
    return f"{a.mean():.{digits}f} ± {a.std(ddof=1):.{digits}f}"


def seeds_table(runs: list[Run]) -> tuple[list[str], list[tuple[str, list[str]]]] | None:
    """One row per seed group (None when there is none): seeds, accuracy and ECE as mean ± sample standard
    deviation over the seeds, AUROC per (OOD set, score) likewise, and against softmax's group of the same
    dataset and settings, on the seeds both have: in how many each mark of the bar holds."""
    groups = seed_groups(runs)
    if not groups:
        return None
    sets = sorted({s for g in groups for r in g.values() for s in (r.metrics or {}).get("ood_auroc") or {}})
    scores = [(s, k) for s in sets for k in ("logpx", "maxprob", "pxgrad")
              if any(k in ((r.metrics or {}).get("ood_auroc") or {}).get(s, {}) for g in groups for r in g.values())]
    refs = {_pair_key(next(iter(g.values()))): g for g in groups if next(iter(g.values())).objective == "softmax"}
    header = ["objective", "dataset", "seeds", "accuracy %", "ECE %", *[f"AUROC {s} ({k})" for s, k in scores],
              "vs softmax, seed by seed: accuracy within 3 · ECE lower · "
              f"{' or '.join(GENERATIVE)} higher on every OOD set"]
    rows = []
    for g in groups:
        first = next(iter(g.values()))
        cells = [first.label, first.dataset, ", ".join(map(str, g)),
                 _spread([r.metrics["accuracy"] for r in g.values()], True),
                 _spread([r.metrics["ece"] for r in g.values()], True)]
        for s, k in scores:
            vals = [((r.metrics.get("ood_auroc") or {}).get(s) or {}).get(k) for r in g.values()]
            cells.append(_spread(vals, False) if all(v is not None for v in vals) else "–")
        ref = refs.get(_pair_key(first))
        common = [seed for seed in g if ref is not None and seed in ref]
        if first.objective == "softmax":
            cells.append("–")
        elif not common:
            cells.append("no softmax group with these settings and seeds")
        else:
            marks = [versus_softmax(_point(g[seed]), _point(ref[seed])) for seed in common]
            n = len(common)
            cells.append(" · ".join(f"{sum(m[k] for m in marks)} of {n}" for k in ("acc", "ECE", "OOD")))
        rows.append((f"{first.name}+seeds", cells))
    return header, rows
