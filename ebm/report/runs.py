"""The runs the report covers and what it read about each, through the stage table's paths."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ebm.artifacts import read_history, read_metrics, read_reliability, read_scores

SCORES = ("logpx", "maxprob", "pxgrad")
GRIDS = {"fresh": "unconditional, fresh chains", "cond": "class-conditional, fresh chains (a row per class)",
         "buffer": "replay buffer, most confident per predicted class"}
# what the report reads (its keys) → a path template over {run} / {dataset}, relative to the root;
# pipeline.stages.report_inputs() takes them from the stage table
INPUTS = ("metrics", "scores", "reliability", "summary", "history", "grids", "pretrain_metrics", "pretrain_history")


@dataclass
class Run:
    objective: str
    dataset: str
    run: str = ""  # a named run's name (runs.<name> in params.yaml); a grid run's is its objective
    metrics: dict | None = None
    summary: dict | None = None
    grids: dict[str, Path] = field(default_factory=dict)
    reliability: list[dict] = field(default_factory=list)
    history: list[dict] = field(default_factory=list)
    scores: dict[str, np.ndarray] = field(default_factory=dict)  # "set/score" → per-image scores
    variant: dict | None = None  # its overrides without the training seed (ebm.report.seeds.seed_variant); None: its own

    def __post_init__(self):
        self.run = self.run or self.objective

    @property
    def name(self) -> str:
        return f"{self.run}/{self.dataset}"

    @property
    def label(self) -> str:
        """The objective, and a named run's name beside it."""
        return self.objective if self.run == self.objective else f"{self.objective} ({self.run})"


@dataclass
class Section:
    title: str
    tables: list[tuple[str, list[str], list[tuple[str, list[str]]]]] = field(default_factory=list)  # id, header, (run, cells)
    figures: list[tuple[str, str]] = field(default_factory=list)  # file, caption
    notes: list[str] = field(default_factory=list)



def collect_runs(root: Path, items: list[dict[str, str]], inputs: dict[str, str]) -> list[Run]:
    """``items``: the runs, ``{"run", "objective", "dataset"}`` each (ebm.config.run_items), and optionally
    ``"variant"`` (ebm.report.seeds.seed_variant), which groups a run's seed replicates."""
    runs = []
    for it in items:
        def at(key: str) -> Path:
            return root / inputs[key].format(run=it["run"], dataset=it["dataset"])
        grids = {g: at("grids") / f"{g}.png" for g in GRIDS}
        runs.append(Run(it["objective"], it["dataset"], it["run"], metrics=read_metrics(at("metrics")),
                        summary=read_metrics(at("summary")), grids={g: p for g, p in grids.items() if p.is_file()},
                        scores=read_scores(at("scores")), reliability=read_reliability(at("reliability")),
                        history=read_history(at("history")), variant=it.get("variant")))
    return runs
