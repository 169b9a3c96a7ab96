"""The report's figures (matplotlib, Agg); each function returns False when it has nothing to plot."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ebm.eval.ood import roc_curve
from ebm.report.runs import SCORES, Run
from ebm.report.tables import fmt


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    _plt().close(fig)


def plot_reliability(runs: list[Run], dataset: str, path: Path) -> bool:
    sel = [r for r in runs if r.dataset == dataset and r.reliability]
    if not sel:
        return False
    fig, axes = _plt().subplots(1, len(sel), figsize=(3.2 * len(sel), 3.2), squeeze=False)
    for ax, r in zip(axes[0], sel):
        lo = [b["bin_lo"] for b in r.reliability]
        ax.bar(lo, [b["accuracy"] for b in r.reliability], width=[b["bin_hi"] - b["bin_lo"] for b in r.reliability],
               align="edge", edgecolor="k")
        ax.plot([0, 1], [0, 1], "r--", lw=1)
        ax.set(title=f"{r.label} (ECE {fmt((r.metrics or {}).get('ece'), True)}%)", xlabel="confidence",
               xlim=(0, 1), ylim=(0, 1))
    axes[0][0].set_ylabel("accuracy")
    _save(fig, path)
    return True


def plot_curves(runs: list[Run], dataset: str, path: Path) -> bool:
    sel = [r for r in runs if r.dataset == dataset and r.history]
    if not sel:
        return False
    fig, axes = _plt().subplots(1, 3, figsize=(11, 3.2))
    for r in sel:
        steps = [h["step"] for h in r.history]
        for ax, key in zip(axes, ("loss", "ce", "acc")):
            ax.plot(steps, [h.get(key) for h in r.history], label=r.label)
    for ax, title in zip(axes, ("total loss", "cross-entropy (train batch)", "accuracy (train batch)")):
        ax.set(title=title, xlabel="step")
        ax.legend(fontsize=8)
    _save(fig, path)
    return True


def plot_ood(run: Run, path: Path) -> bool:
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


def plot_robustness(runs: list[Run], dataset: str, path: Path) -> bool:
    sel = [r for r in runs if r.dataset == dataset and (r.metrics or {}).get("robustness")]
    if not sel:
        return False
    fig, axes = _plt().subplots(1, 2, figsize=(8, 3.2))
    for r in sel:
        for ax, norm in zip(axes, ("linf", "l2")):
            acc = r.metrics["robustness"].get(norm) or {}
            ax.plot([float(e) for e in acc], list(acc.values()), "o-", label=r.label)
    for ax, norm in zip(axes, ("L∞", "L2")):
        ax.set(title=f"PGD {norm}", xlabel="ε (1/255 of the [0, 1] range)", ylabel="accuracy", ylim=(0, 1))
        ax.legend(fontsize=8)
    _save(fig, path)
    return True


def plot_pretrain(history: list[dict], path: Path) -> bool:
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
