"""The report's table "Seeds": the runs of one objective and dataset that differ in their training seed
alone (``pipeline.runset --seeds``), as one row each: the mean and spread of each metric over the seeds,
and, seed by seed, how the group fares against softmax's group of the same settings (issue 17's bar,
:func:`ebm.report.versus.versus_softmax`)."""
from __future__ import annotations

import copy
import json
from dataclasses import dataclass

import numpy as np

from ebm.config.runs import OVERRIDABLE
from ebm.report.runs import SCORES, Run
from ebm.report.versus import ACCURACY_WITHIN, GENERATIVE, versus_softmax


def _prune(d: dict) -> dict:
    """``d`` without empty mappings, at any depth (``train: {}`` overrides nothing)."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            v = _prune(v)
            if not v:
                continue
        out[k] = v
    return out


def seed_variant(raw: dict, run: str) -> dict:
    """Run ``run``'s overrides (``runs.<run>`` of the params document ``raw``) without ``train.common.seed``
    and without empty sections; a grid run's: ``{}``. Runs of one objective and dataset with the same
    variant differ in their training seed alone. (Here, not in ebm.config, so that a change to it reruns
    the report alone.)"""
    spec = copy.deepcopy({k: v for k, v in ((raw.get("runs") or {}).get(run) or {}).items() if k in OVERRIDABLE})
    common = (spec.get("train") or {}).get("common")
    if isinstance(common, dict):
        common.pop("seed", None)
    return _prune(spec)


@dataclass
class SeedGroup:
    first: Run  # the group's first run in the report's order (the grid's or the named run replicated)
    by_seed: dict[int, Run]  # seed → run, seeds ascending


def _seed(r: Run) -> int | None:
    return (((r.summary or {}).get("params") or {}).get("train.common") or {}).get("seed")


def _scored(r: Run) -> bool:
    m = r.metrics or {}
    return m.get("accuracy") is not None and m.get("ece") is not None


def seed_groups(runs: list[Run]) -> list[SeedGroup]:
    """The groups of runs of one dataset, objective and variant with two or more seeds, in the order of
    ``runs``. A run without a variant, accuracy and ECE, or a recorded seed is in no group; of two runs with
    one seed (``pipeline.runset`` never makes them), the first."""
    groups: dict[str, SeedGroup] = {}
    for r in runs:
        if r.variant is None or not _scored(r) or _seed(r) is None:
            continue
        key = json.dumps([r.dataset, r.objective, r.variant], sort_keys=True)
        groups.setdefault(key, SeedGroup(r, {})).by_seed.setdefault(_seed(r), r)
    return [SeedGroup(g.first, dict(sorted(g.by_seed.items()))) for g in groups.values() if len(g.by_seed) >= 2]


def _pair_key(r: Run) -> str:
    """What a group and softmax's must share to be compared: the dataset and the overrides of the shared
    sections the marks depend on (model, train.common, train.augment, evaluate; not the objectives' own
    sections, nor generate, which the marks do not read)."""
    v = {k: ({s: x for s, x in val.items() if s in ("common", "augment")} if k == "train" else val)
         for k, val in (r.variant or {}).items() if k != "generate"}
    return json.dumps([r.dataset, _prune(v)], sort_keys=True)


def _point(r: Run) -> dict:
    m = r.metrics or {}
    return {"accuracy": 100 * m["accuracy"], "ece": 100 * m["ece"], "ood": m.get("ood_auroc") or {}}


def _spread(values: list[float], pct: bool) -> str:
    a = np.asarray(values, dtype=float) * (100 if pct else 1)
    digits = 2 if pct else 3
    return f"{a.mean():.{digits}f} ± {a.std(ddof=1):.{digits}f}"


MARKS_HEADER = (f"vs softmax, seed by seed: accuracy within {ACCURACY_WITHIN:g} · ECE lower · "
                f"{' or '.join(GENERATIVE)} higher on every OOD set")


def seeds_table(runs: list[Run]) -> tuple[list[str], list[tuple[str, list[str]]]] | None:
    """One row per seed group (None when there is none): seeds, accuracy and ECE as mean ± sample standard
    deviation over the seeds, AUROC per (OOD set, score) likewise, and against softmax's reference group
    (same dataset and shared overrides, softmax's own section not overridden), on the seeds both have: in
    how many each mark of the bar holds."""
    groups = seed_groups(runs)
    if not groups:
        return None
    auroc = [(r.metrics.get("ood_auroc") or {}) for g in groups for r in g.by_seed.values()]
    sets = sorted({s for a in auroc for s in a})
    scores = [(s, k) for s in sets for k in SCORES if any(k in a.get(s, {}) for a in auroc)]
    refs = {_pair_key(g.first): g for g in groups
            if g.first.objective == "softmax" and "softmax" not in (g.first.variant or {}).get("train", {})}
    header = ["objective", "dataset", "seeds", "accuracy %", "ECE %", *[f"AUROC {s} ({k})" for s, k in scores],
              MARKS_HEADER]
    rows = []
    for g in groups:
        by = g.by_seed
        cells = [g.first.label, g.first.dataset, ", ".join(map(str, by)),
                 _spread([r.metrics["accuracy"] for r in by.values()], True),
                 _spread([r.metrics["ece"] for r in by.values()], True)]
        for s, k in scores:
            vals = [((r.metrics.get("ood_auroc") or {}).get(s) or {}).get(k) for r in by.values()]
            cells.append(_spread(vals, False) if all(v is not None for v in vals) else "–")
        ref = refs.get(_pair_key(g.first))
        common = [seed for seed in by if ref is not None and seed in ref.by_seed]
        if g.first.objective == "softmax":
            cells.append("–")
        elif not common:
            cells.append("no softmax group with these settings and seeds")
        else:
            marks = [versus_softmax(_point(by[seed]), _point(ref.by_seed[seed])) for seed in common]
            cells.append(" · ".join(f"{sum(m[k] for m in marks)} of {len(common)}" for k in ("acc", "ECE", "OOD")))
        rows.append((f"{g.first.name}+seeds", cells))
    return header, rows
