"""The report's tables: results per run (ours beside the papers'), pretraining per loss weight, and the
params that differ between runs. Each table is (header, [(run name, cells)])."""
from __future__ import annotations

import json

from ebm.papers import paper_value
from ebm.report.runs import Run


def fmt(v: float | None, pct: bool = False) -> str:
    if v is None:
        return "–"
    return f"{100 * v:.2f}" if pct else f"{v:.3f}"


def _with_paper(ours: str, run: Run, metric: str, pct: bool = False) -> str:
    """``ours (paper [tag])`` when the papers report this metric for this objective and dataset."""
    p = paper_value(run.objective, run.dataset, metric)
    if p is None:
        return ours
    value = f"{100 * p[0]:.1f}" if pct else (f"{p[0]:.2f}" if p[0] < 1 else f"{p[0]:.1f}")
    return f"{ours} (paper {value} [{p[1]}])"


def _quality(run: Run, key: str, notes: list[str]) -> str:
    q = ((run.metrics or {}).get("sample_quality") or {}).get("fresh")
    if q is None:
        return "–"
    n = f"n={q.get('n_fake')}" + (f" vs {q.get('n_real')} real" if key == "fid" else "")  # sample sizes
    if q.get(key) is None:
        note = f"{run.name}: IS/FID not computed: {q.get('reason')}"
        if note not in notes:
            notes.append(note)
        return _with_paper("not computed", run, key)
    return _with_paper(f"{q[key]:.2f} ({n})", run, key)


def _columns(runs: list[Run]) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    ood: list[tuple[str, str]] = []
    rob: list[tuple[str, str]] = []
    for r in runs:
        m = r.metrics or {}
        for s, scores in (m.get("ood_auroc") or {}).items():
            ood += [(s, k) for k in scores if (s, k) not in ood]
        for norm in ("linf", "l2"):
            rob += [(norm, e) for e in ((m.get("robustness") or {}).get(norm) or {}) if e != "0" and (norm, e) not in rob]
    rob.sort(key=lambda ne: (ne[0] != "linf", float(ne[1])))  # L∞ first, budgets ascending
    return ood, rob


def results_table(runs: list[Run], notes: list[str]) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """One row per run: accuracy, NLL, ECE, IS, FID, PGD accuracy per budget, AUROC per (set, score)."""
    ood, rob = _columns(runs)
    header = ["objective", "dataset", "accuracy %", "NLL", "ECE %", "IS", "FID",
              *[f"PGD {'L∞' if n == 'linf' else 'L2'} {e}/255 %" for n, e in rob],
              *[f"AUROC {s} ({k})" for s, k in ood], "train s", "steps"]
    rows = []
    for r in runs:
        m, s = r.metrics or {}, r.summary or {}
        robm = m.get("robustness") or {}
        rows.append((r.name, [
            r.label, r.dataset, _with_paper(fmt(m.get("accuracy"), True), r, "accuracy", True),
            fmt(m.get("nll")), _with_paper(fmt(m.get("ece"), True), r, "ece", True),
            _quality(r, "is", notes), _quality(r, "fid", notes),
            *[fmt((robm.get(n) or {}).get(e), True) for n, e in rob],
            *[_with_paper(fmt((m.get("ood_auroc") or {}).get(st, {}).get(k)), r, f"auroc/{st}/{k}") for st, k in ood],
            f"{s['train_seconds']:.0f}" if "train_seconds" in s else "–", str(s.get("steps", "–"))]))
    return header, rows


def _flatten(d: dict, prefix: str = "") -> dict[str, str]:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = json.dumps(v)
    return out


def differing_params(runs: list[Run]) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """Rows = runs, columns = the params keys (dotted) whose values are not the same in every run
    (runs without a training summary are left out: they are listed as missing)."""
    runs = [r for r in runs if r.summary is not None]
    flat = {r.name: {"dataset": r.dataset, **_flatten(r.summary.get("params") or {})} for r in runs}
    keys = sorted({k for f in flat.values() for k in f})
    diff = [k for k in keys if len({f.get(k, "(absent)") for f in flat.values()}) > 1]
    return ["run", *diff], [(r.name, [r.name, *[flat[r.name].get(k, "(absent)") for k in diff]]) for r in runs]


def pretrain_table(metrics: dict) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """One row per loss weight: linear probe, bits/dim, OOD AUROC (−bpd / k-NN) per set, corruption accuracy."""
    runs = metrics.get("runs") or {}
    sets = sorted({s for r in runs.values() for s in r.get("ood_auroc", {})})
    header = ["contrastive weight", "linear probe %", "test bits/dim", *[f"AUROC {s} (−bpd / k-NN)" for s in sets],
              "corrupted accuracy %", "train s"]
    rows = []
    for key, r in runs.items():
        o = r.get("ood_auroc", {})
        rows.append((key, [f"{r['contrastive_weight']:g}", fmt(r.get("linear_probe_accuracy"), True),
                           fmt(r.get("test_bpd")),
                           *[f"{fmt(o.get(s, {}).get('bpd'))} / {fmt(o.get(s, {}).get('knn'))}" for s in sets],
                           fmt((r.get("corruption_accuracy") or {}).get("mean"), True),
                           f"{r['train_seconds']:.0f}" if "train_seconds" in r else "–"]))
    return header, rows
