"""The report: per dataset, a table with a row per objective (ours beside the papers' numbers),
reliability diagrams, OOD score histograms and ROC curves, robustness curves, sample grids, training
curves; the pretraining table over the loss weight; the parameters that differ between the runs.

Reads the stage outputs under a root folder (``data/``) and writes ``index.html`` and ``report.md``
with the figures beside them. Every number comes from a ``metrics.json`` or ``summary.json``; a run
whose files are missing is listed as missing, a metric that was not computed says so and why.
"""
from __future__ import annotations

import html
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ebm.eval.ood import roc_curve
from ebm.history import read_history
from ebm.papers import paper_value

SCORES = ("logpx", "maxprob", "pxgrad")
GRIDS = {"fresh": "unconditional, fresh chains", "cond": "class-conditional, fresh chains (a row per class)",
         "buffer": "replay buffer, most confident per predicted class"}


@dataclass
class Run:
    objective: str
    dataset: str
    metrics: dict | None = None
    summary: dict | None = None
    grids: dict[str, Path] = field(default_factory=dict)
    reliability: list[dict] = field(default_factory=list)
    history: list[dict] = field(default_factory=list)
    scores: dict[str, np.ndarray] = field(default_factory=dict)  # "set/score" → per-image scores

    @property
    def name(self) -> str:
        return f"{self.objective}/{self.dataset}"


@dataclass
class Section:
    title: str
    tables: list[tuple[str, list[str], list[tuple[str, list[str]]]]] = field(default_factory=list)  # id, header, (run, cells)
    figures: list[tuple[str, str]] = field(default_factory=list)  # file, caption
    notes: list[str] = field(default_factory=list)


def _json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _scores(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        return {}
    with np.load(path, allow_pickle=False) as z:
        return {k.replace("__", "/"): z[k] for k in z.files}


def collect_runs(root: Path, objectives: list[str], datasets: list[str]) -> list[Run]:
    runs = []
    for d in datasets:
        for o in objectives:
            ev, tr, ge = root / "evaluate" / o / d, root / "train" / o / d, root / "generate" / o / d
            r = Run(o, d, metrics=_json(ev / "metrics.json"), summary=_json(tr / "summary.json"),
                    grids={g: ge / "grids" / f"{g}.png" for g in GRIDS if (ge / "grids" / f"{g}.png").is_file()},
                    scores=_scores(ev / "scores.npz"))
            if (ev / "reliability.csv").is_file():
                r.reliability = read_history(ev / "reliability.csv")
            if (tr / "history.csv").is_file():
                r.history = read_history(tr / "history.csv")
            runs.append(r)
    return runs


# ----------------------------------------------------------------------------------------------------
# Tables


def _fmt(v: float | None, pct: bool = False) -> str:
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
            r.objective, r.dataset, _with_paper(_fmt(m.get("accuracy"), True), r, "accuracy", True),
            _fmt(m.get("nll")), _with_paper(_fmt(m.get("ece"), True), r, "ece", True),
            _quality(r, "is", notes), _quality(r, "fid", notes),
            *[_fmt((robm.get(n) or {}).get(e), True) for n, e in rob],
            *[_with_paper(_fmt((m.get("ood_auroc") or {}).get(st, {}).get(k)), r, f"auroc/{st}/{k}") for st, k in ood],
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
        rows.append((key, [f"{r['contrastive_weight']:g}", _fmt(r.get("linear_probe_accuracy"), True),
                           _fmt(r.get("test_bpd")),
                           *[f"{_fmt(o.get(s, {}).get('bpd'))} / {_fmt(o.get(s, {}).get('knn'))}" for s in sets],
                           _fmt((r.get("corruption_accuracy") or {}).get("mean"), True),
                           f"{r['train_seconds']:.0f}" if "train_seconds" in r else "–"]))
    return header, rows


# ----------------------------------------------------------------------------------------------------
# Figures (matplotlib, Agg)


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    _plt().close(fig)


def _plot_reliability(runs: list[Run], dataset: str, path: Path) -> bool:
    sel = [r for r in runs if r.dataset == dataset and r.reliability]
    if not sel:
        return False
    fig, axes = _plt().subplots(1, len(sel), figsize=(3.2 * len(sel), 3.2), squeeze=False)
    for ax, r in zip(axes[0], sel):
        lo = [b["bin_lo"] for b in r.reliability]
        ax.bar(lo, [b["accuracy"] for b in r.reliability], width=[b["bin_hi"] - b["bin_lo"] for b in r.reliability],
               align="edge", edgecolor="k")
        ax.plot([0, 1], [0, 1], "r--", lw=1)
        ax.set(title=f"{r.objective} (ECE {_fmt((r.metrics or {}).get('ece'), True)}%)", xlabel="confidence",
               xlim=(0, 1), ylim=(0, 1))
    axes[0][0].set_ylabel("accuracy")
    _save(fig, path)
    return True


def _plot_curves(runs: list[Run], dataset: str, path: Path) -> bool:
    sel = [r for r in runs if r.dataset == dataset and r.history]
    if not sel:
        return False
    fig, axes = _plt().subplots(1, 3, figsize=(11, 3.2))
    for r in sel:
        steps = [h["step"] for h in r.history]
        for ax, key in zip(axes, ("loss", "ce", "acc")):
            ax.plot(steps, [h.get(key) for h in r.history], label=r.objective)
    for ax, title in zip(axes, ("total loss", "cross-entropy (train batch)", "accuracy (train batch)")):
        ax.set(title=title, xlabel="step")
        ax.legend(fontsize=8)
    _save(fig, path)
    return True


def _plot_ood(run: Run, path: Path) -> bool:
    """Score histograms (test vs each OOD set) and ROC curves, one column per score."""
    sets = sorted({k.split("/")[0] for k in run.scores} - {"test"})
    scores = [s for s in SCORES if f"test/{s}" in run.scores]
    if not sets or not scores:
        return False
    fig, axes = _plt().subplots(2, len(scores), figsize=(3.6 * len(scores), 6), squeeze=False)
    for j, s in enumerate(scores):
        test = run.scores[f"test/{s}"]
        bins = np.histogram_bin_edges(np.concatenate([test, *[run.scores[f"{o}/{s}"] for o in sets]]), bins=40)
        axes[0][j].hist(test, bins=bins, alpha=0.5, density=True, label="test")
        for o in sets:
            axes[0][j].hist(run.scores[f"{o}/{s}"], bins=bins, alpha=0.5, density=True, label=o)
            fpr, tpr = roc_curve(test, run.scores[f"{o}/{s}"])
            axes[1][j].plot(fpr, tpr, label=o)
        axes[0][j].set(title=f"{s} histogram")
        axes[1][j].plot([0, 1], [0, 1], "k:", lw=1)
        axes[1][j].set(title=f"{s} ROC (test = positive)", xlabel="false positive rate", ylabel="true positive rate")
        axes[0][j].legend(fontsize=7)
        axes[1][j].legend(fontsize=7)
    fig.suptitle(run.name)
    _save(fig, path)
    return True


def _plot_robustness(runs: list[Run], dataset: str, path: Path) -> bool:
    sel = [r for r in runs if r.dataset == dataset and (r.metrics or {}).get("robustness")]
    if not sel:
        return False
    fig, axes = _plt().subplots(1, 2, figsize=(8, 3.2))
    for r in sel:
        for ax, norm in zip(axes, ("linf", "l2")):
            acc = r.metrics["robustness"].get(norm) or {}
            ax.plot([float(e) for e in acc], list(acc.values()), "o-", label=r.objective)
    for ax, norm in zip(axes, ("L∞", "L2")):
        ax.set(title=f"PGD {norm}", xlabel="ε (1/255 of the [0, 1] range)", ylabel="accuracy", ylim=(0, 1))
        ax.legend(fontsize=8)
    _save(fig, path)
    return True


def _plot_pretrain(history: list[dict], path: Path) -> bool:
    if not history:
        return False
    fig, axes = _plt().subplots(1, 2, figsize=(8, 3.2))
    for w in sorted({h["weight"] for h in history}):
        rows = [h for h in history if h["weight"] == w]
        for ax, key in zip(axes, ("bpd", "ntxent")):
            ax.plot([h["step"] for h in rows], [h.get(key) for h in rows], label=f"w={w:g}")
    for ax, title in zip(axes, ("bits/dim (train batch)", "NT-Xent (train batch)")):
        ax.set(title=title, xlabel="step")
        ax.legend(fontsize=8)
    _save(fig, path)
    return True


# ----------------------------------------------------------------------------------------------------
# Assembly


def _dataset_section(runs: list[Run], d: str, out: Path) -> Section:
    sel = [r for r in runs if r.dataset == d]
    sec = Section(f"Dataset {d}")
    header, rows = results_table(sel, sec.notes)
    sec.tables.append((f"results-{d}", header, rows))
    for fn, name, cap in ((_plot_reliability, f"reliability_{d}.png", f"Reliability diagrams on {d}"),
                          (_plot_robustness, f"robustness_{d}.png", f"Accuracy under PGD on {d}"),
                          (_plot_curves, f"curves_{d}.png", f"Training curves on {d}")):
        if fn(runs, d, out / name):
            sec.figures.append((name, cap))
    for r in sel:
        if _plot_ood(r, out / f"ood_{r.objective}_{d}.png"):
            sec.figures.append((f"ood_{r.objective}_{d}.png", f"OOD score histograms and ROC curves, {r.name}"))
        captions = _json(path.parent / "captions.json") if (path := next(iter(r.grids.values()), None)) else None
        for g, path in r.grids.items():
            name = f"samples_{g}_{r.objective}_{d}.png"
            shutil.copyfile(path, out / name)
            how = f" ({(captions or {})[g]})" if g in (captions or {}) else ""  # the sampler that made them
            sec.figures.append((name, f"Samples of {r.name}: {GRIDS[g]}{how}"))
    return sec


def _pretrain_section(root: Path, d: str, out: Path) -> Section | None:
    metrics = _json(root / "pretrain" / d / "metrics.json")
    if metrics is None:
        return None
    sec = Section(f"Pretraining on {d} (hybrid generative-contrastive, one model per loss weight)")
    header, rows = pretrain_table(metrics)
    sec.tables.append((f"pretrain-{d}", header, rows))
    hist = root / "pretrain" / d / "history.csv"
    if hist.is_file() and _plot_pretrain(read_history(hist), out / f"pretrain_{d}.png"):
        sec.figures.append((f"pretrain_{d}.png", f"Pretraining curves on {d}"))
    return sec


def write_report(root: Path, out: Path, objectives: list[str], datasets: list[str], *, provenance: dict) -> dict:
    """Write ``index.html``, ``report.md`` and figures into ``out`` (an existing, empty folder)."""
    runs = collect_runs(root, objectives, datasets)
    sections = [_dataset_section(runs, d, out) for d in datasets]
    sections += [s for d in datasets if (s := _pretrain_section(root, d, out)) is not None]
    params = Section("Parameters that differ between the runs")
    params.tables.append(("params-diff", *differing_params(runs)))
    sections.append(params)
    missing = [r.name for r in runs if r.metrics is None]
    (out / "report.md").write_text(_markdown(sections, missing, provenance))
    (out / "index.html").write_text(_html(sections, missing, provenance))
    return {"runs": len(runs), "missing": missing}


INTRO = ("Every number was measured by this pipeline (`data/*/…/metrics.json`); the papers' reported values "
         "stand beside ours in parentheses with their source tag from METHODS.md §7 ([P] paper, [C] code, "
         "[S] secondary source, [U] unverified); they used WRN-28-10, full data and ~10⁵ steps, so they are "
         "a reference, not a target at this budget. ECE: equal-width confidence bins. AUROC: test set as "
         "positives, higher score = more in-distribution (logpx: LSE of logits; maxprob: max softmax; "
         "pxgrad: minus the norm of the input gradient of logpx). PGD: white-box, accuracy on the attacked "
         "subset. IS/FID: torch-fidelity, fresh samples vs the evaluate.fid_reference split, sample sizes "
         "beside each value.")


def md(text: str) -> str:
    """Text for a markdown line or table cell: markdown renders raw HTML, so it is escaped as in
    ``index.html``; ``|`` would end a cell and ``[``/``]`` an image caption."""
    return html.escape(str(text), quote=False).replace("|", "\\|")


def _markdown(sections: list[Section], missing: list[str], prov: dict) -> str:
    lines = ["# Hybrid discriminative-generative classifiers: results", "", INTRO]
    if missing:
        lines += ["", f"Missing runs (no metrics.json): {md(', '.join(missing))}"]
    for sec in sections:
        lines += ["", f"## {md(sec.title)}"]
        for _, header, rows in sec.tables:
            lines += ["", "| " + " | ".join(map(md, header)) + " |", "|" + "---|" * len(header)]
            lines += ["| " + " | ".join(map(md, cells)) + " |" for _, cells in rows]
        lines += [""] + [f"- {md(n)}" for n in sec.notes] if sec.notes else []
        lines += [""] + [f"![{md(cap).replace('[', '(').replace(']', ')')}](<{md(name)}>)"
                         for name, cap in sec.figures]
    lines += ["", "## Provenance", "", "```json", json.dumps(prov, indent=2, sort_keys=True), "```", ""]
    return "\n".join(lines)


def _html_table(tid: str, header: list[str], rows: list[tuple[str, list[str]]]) -> str:
    e = html.escape
    th = "".join(f"<th>{e(h)}</th>" for h in header)
    trs = "".join(f"<tr data-run='{e(run)}'>" + "".join(f"<td>{e(c)}</td>" for c in cells) + "</tr>"
                  for run, cells in rows)
    return f"<table id='{e(tid)}'><thead><tr>{th}</tr></thead><tbody>{trs}</tbody></table>"


def _html(sections: list[Section], missing: list[str], prov: dict) -> str:
    e = html.escape
    body = ["<h1>Hybrid discriminative-generative classifiers: results</h1>", f"<p>{e(INTRO)}</p>"]
    if missing:
        body.append(f"<p class='missing'>Missing runs (no metrics.json): {e(', '.join(missing))}</p>")
    for sec in sections:
        body.append(f"<h2>{e(sec.title)}</h2>")
        body += [f"<div class='scroll'>{_html_table(*t)}</div>" for t in sec.tables]
        if sec.notes:
            body.append("<ul class='notes'>" + "".join(f"<li>{e(n)}</li>" for n in sec.notes) + "</ul>")
        body += [f"<figure><img src='{e(n)}' alt='{e(c)}'><figcaption>{e(c)}</figcaption></figure>"
                 for n, c in sec.figures]
    body.append(f"<h2>Provenance</h2><pre>{e(json.dumps(prov, indent=2, sort_keys=True))}</pre>")
    style = ("body{font-family:sans-serif;max-width:1200px;margin:auto;padding:1em}.scroll{overflow-x:auto}"
             "table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #999;padding:3px 6px;"
             "text-align:right;font-size:13px}figure{display:inline-block;margin:8px;vertical-align:top}"
             "img{image-rendering:pixelated;max-width:100%}.notes{font-size:12px;color:#555}")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>EBM report</title>"
            f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n")
