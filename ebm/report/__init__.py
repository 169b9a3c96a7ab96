"""The report: per dataset, a table with a row per objective (ours beside the papers' numbers),
reliability diagrams, OOD score histograms and ROC curves, robustness curves, sample grids, training
curves; the seed replicates of a run as one row (mean ± spread); the pretraining table over the loss weight;
the parameters that differ between the runs.

Reads the stage outputs at the paths the stage table gives (``pipeline.stages.report_inputs``,
relative to a root folder) and writes ``index.html`` and ``report.md`` with the figures beside them.
Every number comes from a ``metrics.json`` or ``summary.json``; a run whose files are missing is listed
as missing, a metric that was not computed says so and why.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from ebm.artifacts import read_captions, read_metrics, read_series
from ebm.report.figures import plot_curves, plot_ood, plot_pretrain, plot_reliability, plot_robustness
from ebm.report.render import html_page, markdown
from ebm.report.runs import GRIDS, INPUTS, Run, Section, collect_runs
from ebm.report.seeds import seeds_table
from ebm.report.tables import differing_params, pretrain_table, results_table

__all__ = ["INPUTS", "differing_params", "write_report"]


def _dataset_section(runs: list[Run], d: str, out: Path) -> Section:
    sel = [r for r in runs if r.dataset == d]
    sec = Section(f"Dataset {d}")
    header, rows = results_table(sel, sec.notes)
    sec.tables.append((f"results-{d}", header, rows))
    if (seeds := seeds_table(sel)) is not None:
        sec.tables.append((f"seeds-{d}", *seeds))
        sec.notes.append(f"Seeds ({d}): the runs of one objective that differ in their training seed alone "
                         "(python -m pipeline.runset --seeds), one row each: mean ± standard deviation over the "
                         "seeds; the last column counts, over the seeds softmax's group of the same settings also "
                         "ran, the seeds where each mark holds.")
    for fn, name, cap in ((plot_reliability, f"reliability_{d}.png", f"Reliability diagrams on {d}"),
                          (plot_robustness, f"robustness_{d}.png", f"Accuracy under PGD on {d}"),
                          (plot_curves, f"curves_{d}.png", f"Training curves on {d}")):
        if fn(runs, d, out / name):
            sec.figures.append((name, cap))
    for r in sel:
        if plot_ood(r, out / f"ood_{r.run}_{d}.png"):
            sec.figures.append((f"ood_{r.run}_{d}.png", f"OOD score histograms and ROC curves, {r.name}"))
        captions = read_captions(path.parent) if (path := next(iter(r.grids.values()), None)) else {}
        for g, path in r.grids.items():
            name = f"samples_{g}_{r.run}_{d}.png"
            shutil.copyfile(path, out / name)
            how = f" ({captions[g]})" if g in captions else ""  # the sampler that made them
            sec.figures.append((name, f"Samples of {r.name}: {GRIDS[g]}{how}"))
    return sec


def _pretrain_section(root: Path, d: str, out: Path, inputs: dict[str, str]) -> Section | None:
    metrics = read_metrics(root / inputs["pretrain_metrics"].format(dataset=d))
    if metrics is None:
        return None
    sec = Section(f"Pretraining on {d} (hybrid generative-contrastive, one model per loss weight)")
    header, rows = pretrain_table(metrics)
    sec.tables.append((f"pretrain-{d}", header, rows))
    history = [row for rows in read_series(root / inputs["pretrain_history"].format(dataset=d)).values() for row in rows]
    if plot_pretrain(history, out / f"pretrain_{d}.png"):
        sec.figures.append((f"pretrain_{d}.png", f"Pretraining curves on {d}"))
    return sec


def write_report(root: Path, out: Path, items: list[dict[str, str]], datasets: list[str], *,
                 inputs: dict[str, str], provenance: dict) -> dict:
    """Write ``index.html``, ``report.md`` and figures into ``out`` (an existing, empty folder). ``items``:
    the runs (``{"run", "objective", "dataset"}``, ebm.config.run_items); ``inputs``: each key of
    :data:`INPUTS` → its path template under ``root``."""
    if sorted(inputs) != sorted(INPUTS):
        raise ValueError(f"report inputs {sorted(inputs)} != {sorted(INPUTS)}")  # a bug in the caller
    runs = collect_runs(root, sorted(items, key=lambda it: datasets.index(it["dataset"])), inputs)
    sections = [_dataset_section(runs, d, out) for d in datasets]
    sections += [s for d in datasets if (s := _pretrain_section(root, d, out, inputs)) is not None]
    params = Section("Parameters that differ between the runs")
    params.tables.append(("params-diff", *differing_params(runs)))
    sections.append(params)
    missing = [r.name for r in runs if r.metrics is None]
    (out / "report.md").write_text(markdown(sections, missing, provenance))
    (out / "index.html").write_text(html_page(sections, missing, provenance))
    return {"runs": len(runs), "missing": missing}

