"""The report: one table over every objective × dataset, sample grids, reliability diagrams, curves.

Reads the stage outputs under a root folder (``data/``) and writes ``index.html`` and ``report.md``
with the figures beside them. Every number comes from a ``metrics.json`` or ``summary.json``; a run
whose files are missing is listed as missing, never filled in.
"""
from __future__ import annotations

import csv
import html
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from ebm.history import read_history


@dataclass
class Run:
    objective: str
    dataset: str
    metrics: dict | None = None
    summary: dict | None = None
    grid: Path | None = None
    reliability: list[dict] = field(default_factory=list)
    history: list[dict] = field(default_factory=list)


def _json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def collect_runs(root: Path, objectives: list[str], datasets: list[str]) -> list[Run]:
    runs = []
    for d in datasets:
        for o in objectives:
            ev, tr, ge = root / "evaluate" / o / d, root / "train" / o / d, root / "generate" / o / d
            r = Run(o, d, metrics=_json(ev / "metrics.json"), summary=_json(tr / "summary.json"),
                    grid=(ge / "grid.png") if (ge / "grid.png").is_file() else None)
            if (ev / "reliability.csv").is_file():
                with open(ev / "reliability.csv", newline="") as f:
                    r.reliability = [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]
            if (tr / "history.csv").is_file():
                r.history = read_history(tr / "history.csv")
            runs.append(r)
    return runs


def _fmt(v: float | None, pct: bool = False) -> str:
    if v is None:
        return "–"
    return f"{100 * v:.2f}" if pct else f"{v:.3f}"


def table(runs: list[Run]) -> tuple[list[str], list[list[str]]]:
    """Header and rows: one row per run, OOD AUROC columns per (set, score)."""
    ood_cols: list[tuple[str, str]] = []
    for r in runs:
        for s, scores in ((r.metrics or {}).get("ood_auroc") or {}).items():
            ood_cols += [(s, k) for k in scores if (s, k) not in ood_cols]
    header = ["objective", "dataset", "accuracy %", "NLL", "ECE %",
              *[f"AUROC {s} ({k})" for s, k in ood_cols], "train s", "steps"]
    rows = []
    for r in runs:
        m, s = r.metrics or {}, r.summary or {}
        rows.append([r.objective, r.dataset, _fmt(m.get("accuracy"), True), _fmt(m.get("nll")),
                     _fmt(m.get("ece"), True),
                     *[_fmt(m.get("ood_auroc", {}).get(st, {}).get(k)) for st, k in ood_cols],
                     f"{s['train_seconds']:.0f}" if "train_seconds" in s else "–", str(s.get("steps", "–"))])
    return header, rows


def _plot_reliability(runs: list[Run], dataset: str, path: Path) -> bool:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sel = [r for r in runs if r.dataset == dataset and r.reliability]
    if not sel:
        return False
    fig, axes = plt.subplots(1, len(sel), figsize=(3.2 * len(sel), 3.2), squeeze=False)
    for ax, r in zip(axes[0], sel):
        lo = [b["bin_lo"] for b in r.reliability]
        width = [b["bin_hi"] - b["bin_lo"] for b in r.reliability]
        ax.bar(lo, [b["accuracy"] for b in r.reliability], width=width, align="edge", edgecolor="k",
               label="accuracy")
        ax.plot([0, 1], [0, 1], "r--", lw=1, label="calibrated")
        ece = (r.metrics or {}).get("ece")
        ax.set_title(f"{r.objective} (ECE {_fmt(ece, True)}%)", fontsize=9)
        ax.set_xlabel("confidence")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
    axes[0][0].set_ylabel("accuracy")
    fig.suptitle(f"Reliability diagrams, {dataset}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def _plot_curves(runs: list[Run], dataset: str, path: Path) -> bool:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sel = [r for r in runs if r.dataset == dataset and r.history]
    if not sel:
        return False
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(8, 3.2))
    for r in sel:
        steps = [h["step"] for h in r.history]
        a1.plot(steps, [h["ce"] for h in r.history], label=r.objective)
        a2.plot(steps, [h["acc"] for h in r.history], label=r.objective)
    a1.set_title("cross-entropy (train batch)", fontsize=9)
    a2.set_title("accuracy (train batch)", fontsize=9)
    for a in (a1, a2):
        a.set_xlabel("step")
        a.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def write_report(root: Path, out: Path, objectives: list[str], datasets: list[str], *, provenance: dict) -> dict:
    """Write ``index.html``, ``report.md`` and figures into ``out`` (an existing, empty folder)."""
    runs = collect_runs(root, objectives, datasets)
    header, rows = table(runs)
    figures: dict[str, list[tuple[str, str]]] = {d: [] for d in datasets}
    for d in datasets:
        if _plot_reliability(runs, d, out / f"reliability_{d}.png"):
            figures[d].append((f"reliability_{d}.png", f"Reliability diagrams on {d}"))
        if _plot_curves(runs, d, out / f"curves_{d}.png"):
            figures[d].append((f"curves_{d}.png", f"Training curves on {d}"))
        for r in runs:
            if r.dataset == d and r.grid is not None:
                name = f"samples_{r.objective}_{d}.png"
                shutil.copyfile(r.grid, out / name)
                figures[d].append((name, f"SGLD samples, {r.objective} on {d}"))
    missing = [f"{r.objective}/{r.dataset}" for r in runs if r.metrics is None]
    (out / "report.md").write_text(_markdown(header, rows, figures, missing, provenance))
    (out / "index.html").write_text(_html(header, rows, figures, missing, provenance))
    return {"runs": len(runs), "missing": missing}


def _markdown(header, rows, figures, missing, prov) -> str:
    lines = ["# Hybrid discriminative-generative classifiers: results", "",
             "Every number below was measured by this pipeline's evaluate stage (`data/evaluate/*/*/metrics.json`).",
             "ECE uses equal-width confidence bins; AUROC treats the test set as positives (logpx: LSE of logits; "
             "maxprob: max softmax; pxgrad: minus the norm of the input gradient of logpx).", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    if missing:
        lines += ["", f"Missing runs (no metrics.json): {', '.join(missing)}"]
    for d, figs in figures.items():
        lines += ["", f"## {d}", ""]
        lines += [f"![{cap}]({name})" for name, cap in figs]
    lines += ["", "## Provenance", "", "```json", json.dumps(prov, indent=2, sort_keys=True), "```", ""]
    return "\n".join(lines)


def _html(header, rows, figures, missing, prov) -> str:
    e = html.escape
    th = "".join(f"<th>{e(h)}</th>" for h in header)
    trs = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in rows)
    body = [f"<h1>Hybrid discriminative-generative classifiers: results</h1>",
            "<p>Every number was measured by this pipeline's evaluate stage. ECE: equal-width confidence bins. "
            "AUROC: test set as positives, higher score = more in-distribution (logpx: LSE of logits; maxprob: max softmax; pxgrad: minus the norm of the input gradient of logpx).</p>",
            f"<table id='results'><thead><tr>{th}</tr></thead><tbody>{trs}</tbody></table>"]
    if missing:
        body.append(f"<p class='missing'>Missing runs (no metrics.json): {e(', '.join(missing))}</p>")
    for d, figs in figures.items():
        body.append(f"<h2>{e(d)}</h2>")
        body += [f"<figure><img src='{e(n)}' alt='{e(c)}'><figcaption>{e(c)}</figcaption></figure>" for n, c in figs]
    body.append(f"<h2>Provenance</h2><pre>{e(json.dumps(prov, indent=2, sort_keys=True))}</pre>")
    style = ("body{font-family:sans-serif;max-width:1100px;margin:auto;padding:1em}"
             "table{border-collapse:collapse}td,th{border:1px solid #999;padding:3px 8px;text-align:right}"
             "figure{display:inline-block;margin:8px}img{image-rendering:pixelated}")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>EBM report</title>"
            f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n")
