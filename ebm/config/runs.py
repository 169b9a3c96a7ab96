"""Named runs: ``runs.<name>`` in ``params.yaml`` is one more job per per-run stage (train, generate,
evaluate), beside the grid of ``objectives`` × ``datasets``.

A run names its ``objective`` and ``dataset`` and may override any part of ``model``, ``train`` (``common``,
``augment``, its objective's section), ``generate`` and ``evaluate``. Its effective params are the shared
sections with its overrides merged in: an override may change a key, never add one, so a misspelt key is
named (``unknown key runs.wide.model.widht``). A run's name is its folder (``data/train/<name>/<dataset>``),
so it may not be an objective's name (that folder belongs to the grid).
"""
from __future__ import annotations

import copy
import re
from typing import Any

from ebm.config.schema import OBJECTIVES
from ebm.errors import ParamsError

RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
OVERRIDABLE = ("model", "train", "generate", "evaluate")  # sections a run may override


def merge(base: dict, override: dict, prefix: str = "") -> dict:
    """Deep-merge ``override`` into a copy of ``base``; refuse keys ``base`` does not have."""
    out = copy.deepcopy(base)
    for k, v in override.items():
        if k not in out:
            raise ParamsError(f"unknown key {prefix}{k} (allowed here: {', '.join(map(str, out))})")
        if isinstance(v, dict) != isinstance(out[k], dict):
            raise ParamsError(f"{prefix}{k}: expected {'a mapping' if isinstance(out[k], dict) else 'a value'}, "
                              f"got {type(v).__name__} {v!r}")
        out[k] = merge(out[k], v, f"{prefix}{k}.") if isinstance(v, dict) else v
    return out


def run_raw(raw: dict, name: str) -> dict:
    """The params document of run ``name`` alone: the shared sections with its overrides merged in, its
    objective and dataset as the only ones, and no named runs. Structural errors name ``runs.<name>...``."""
    key = f"runs.{name}"
    runs = raw.get("runs")
    if not isinstance(runs, dict) or name not in runs:
        raise ParamsError(f"no named run {name!r} under `runs`")
    if not isinstance(name, str) or not RUN_NAME.fullmatch(name):
        raise ParamsError(f"{key}: a run's name is a folder name: letters, digits, '_', '.', '-'")
    if name in OBJECTIVES:
        raise ParamsError(f"{key}: {name!r} is an objective's name, whose folders belong to the "
                          "objectives × datasets grid; name the run otherwise")
    spec = runs[name]
    if not isinstance(spec, dict):
        raise ParamsError(f"{key}: expected a mapping, got {type(spec).__name__} {spec!r}")
    for k in ("objective", "dataset"):
        if not isinstance(spec.get(k), str):
            raise ParamsError(f"missing key {key}.{k}" if k not in spec else f"{key}.{k}: expected a string")
    objective, dataset = spec["objective"], spec["dataset"]
    if objective not in OBJECTIVES:
        raise ParamsError(f"{key}.objective: {objective!r} is not one of {list(OBJECTIVES)}")
    if dataset not in (raw.get("datasets") or []):
        raise ParamsError(f"{key}.dataset: {dataset!r} is not listed in `datasets` (its data stage would not run)")
    allowed = ("objective", "dataset", *OVERRIDABLE)
    for k in spec:
        if k not in allowed:
            raise ParamsError(f"unknown key {key}.{k} (allowed here: {', '.join(allowed)})")
        if k in OVERRIDABLE and not isinstance(spec[k], dict):
            raise ParamsError(f"{key}.{k}: expected a mapping, got {type(spec[k]).__name__} {spec[k]!r}")
    for k in spec.get("train", {}):
        if k not in ("common", "augment", objective):
            raise ParamsError(f"{key}.train.{k}: a {objective} run reads train.common, train.augment and "
                              f"train.{objective} only")
    out = copy.deepcopy(raw)
    for section in OVERRIDABLE:
        if section in spec:
            out[section] = merge(raw[section], spec[section], f"{key}.{section}.")
    out.update(objectives=[objective], datasets=[dataset], runs={})
    return out


def run_items(raw: dict) -> list[dict[str, str]]:
    """Every run, grid first: ``{"run", "objective", "dataset"}``; a grid run's name is its objective."""
    grid = [{"run": o, "objective": o, "dataset": d} for o in raw.get("objectives") or [] for d in raw.get("datasets") or []]
    named = [{"run": n, "objective": s["objective"], "dataset": s["dataset"]} for n, s in (raw.get("runs") or {}).items()]
    return grid + named


def is_named(item: dict[str, Any]) -> bool:
    """An item of a named run (not of the grid, whose run is its objective; no run: not per-run)."""
    return item.get("run") not in (None, item.get("objective"))
